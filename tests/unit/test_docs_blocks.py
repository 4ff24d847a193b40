"""Every ```python block of the README and the docs is Python, fragments too, and
a block is either run (tests/integration/test_docs_code.py) or marked a fragment."""

import pytest

from tests.docs_blocks import FRAGMENT, PAGES, python_blocks


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_compiles_and_is_run_or_marked_a_fragment(page):
    for block in python_blocks(page):
        assert block.attrs in ("", FRAGMENT), (
            f"{block.where}: ```python {block.attrs}: only ```python (run by the tests) "
            f"or ```python {FRAGMENT} (an illustrative fragment)"
        )
        block.compile()


def test_the_readme_and_the_quick_start_have_blocks_that_run():
    # Guards the parsing itself: a regex that found nothing would pass every page.
    for page in ("README.md", "docs/quickstart.md"):
        assert len([b for b in python_blocks(page) if not b.fragment]) >= 4, page
