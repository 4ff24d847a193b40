"""MkDocs hooks (mkdocs.yml, `hooks:`).

A code block that is an illustrative fragment is fenced ```python {.fragment}
(tests/docs_blocks.py): GitHub reads the first word and highlights Python, but
Python-Markdown's fenced_code takes no attributes after a language, and would
show the fence as text. The site gets a plain ```python fence instead.
"""

import re

_FRAGMENT_FENCE = re.compile(r"^```python \{\.fragment\}[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown, **kwargs):
    return _FRAGMENT_FENCE.sub("```python", markdown)
