"""tests.settings with the LOGGING a worker test asks for, by CQ_TEST_LOGGING:
"django" (the project sets none: Django's default) or "quickstart" (the
`LOGGING = {...}` block of docs/quickstart.md, read from the page as pasted)."""

import os
import re
from pathlib import Path

from tests.settings import *  # noqa: F403

_choice = os.environ.get("CQ_TEST_LOGGING", "django")
if _choice == "django":
    LOGGING = {}
elif _choice == "quickstart":
    _page = (Path(__file__).resolve().parent.parent / "docs" / "quickstart.md").read_text()
    [_block] = re.findall(r"```python\n(LOGGING = \{.*?)```", _page, re.DOTALL)
    exec(_block)
else:
    raise ValueError(f"CQ_TEST_LOGGING={_choice!r}: 'django' or 'quickstart'")
