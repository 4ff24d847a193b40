"""The ```python blocks of the README and of every docs page, for the tests that
compile and run them (tests/unit/test_docs_blocks.py, tests/integration/test_docs_code.py).

A block that is an illustrative fragment (it calls functions the page does not
define, such as `mail_receipt`) says so in its fence, as ```python {.fragment};
GitHub and MkDocs both still highlight it as Python. Every other block runs.
"""

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
FRAGMENT = "{.fragment}"
_FENCE = re.compile(r"^```python(?P<attrs>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence
    attrs: str  # what follows "python" on the fence, stripped
    code: str

    @property
    def fragment(self):
        return self.attrs == FRAGMENT

    @property
    def where(self):
        return f"{self.page}:{self.line}"

    def compile(self):
        # Lines numbered as in the page, so a traceback points into it.
        return compile("\n" * self.line + self.code, self.page, "exec")


def python_blocks(page):
    """The page's ```python blocks, in order."""
    text = (ROOT / page).read_text()
    return [
        Block(page, text.count("\n", 0, m.start()) + 1, m["attrs"].strip(), m["code"])
        for m in _FENCE.finditer(text)
    ]
