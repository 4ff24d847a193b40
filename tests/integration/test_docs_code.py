"""The README's and each docs page's ```python blocks run, in order, as a reader
pastes them into one module of a project (`myapp.tasks`), with CQ_SERIAL on so
that `.delay()` runs the task at once; blocks marked ```python {.fragment} are
only compiled (tests/unit/test_docs_blocks.py)."""

import functools
import operator

import pytest
from django.db.models import Q
from django.test import override_settings

from cq import registry
from cq.models import Task
from tests.docs_blocks import PAGES, python_blocks

pytestmark = pytest.mark.django_db(transaction=True)

# What a block that is really a fragment raises: a name the page never defines.
FRAGMENT_ERRORS = functools.reduce(
    operator.or_,
    (Q(error__startswith=name) for name in ("NameError", "ModuleNotFoundError", "ImportError")),
)


@pytest.fixture
def restored_registry():
    """The tasks the pages define (myapp.tasks.add, ...) leave with the test."""
    saved = dict(registry._tasks)
    yield
    registry._tasks.clear()
    registry._tasks.update(saved)


@pytest.mark.parametrize("page", PAGES)
def test_the_page_s_python_blocks_run_as_pasted(page, restored_registry):
    namespace = {"__name__": "myapp.tasks"}
    with override_settings(CQ_SERIAL=True):
        for block in python_blocks(page):
            if block.fragment:
                continue
            try:
                exec(block.compile(), namespace)
            except Exception as exc:
                pytest.fail(f"{block.where}: {type(exc).__name__}: {exc}")
            # A task of the page that failed on a missing name is a fragment
            # in disguise: the block ran, its task could not.
            for task in Task.objects.filter(FRAGMENT_ERRORS):
                pytest.fail(f"{block.where}: task {task.func_name} failed: {task.error}")
