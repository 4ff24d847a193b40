"""The registry of `@task` functions, by name.

The worker only ever runs functions found here: a name stored in a row is looked
up, never imported as a dotted path, so a forged row cannot run `os.system`.
(Django's task API names a task by its module path: cq.backends may import
that module, whose decoration registers the task; the name is still only
looked up here, never called.)
"""

from collections.abc import Callable
from typing import Any

from .exceptions import UnknownTaskError

_tasks: dict[str, Any] = {}  # name -> TaskFunction
# Functions that may make an unknown name known (cq.backends: a Django task
# is named by its module path, and importing that module registers it);
# each returns whether it imported anything.
_finders: list[Callable[[str], bool]] = []


def register(task_function):
    existing = _tasks.get(task_function.name)
    if existing is not None and existing.fn is not task_function.fn:
        # Re-importing the same module (autoreload, tests) registers the same
        # function again; two different functions under one name is a bug.
        if existing.fn.__qualname__ != task_function.fn.__qualname__:
            raise ValueError(
                f"two @task functions are registered as {task_function.name!r}: "
                f"{existing.fn.__module__}.{existing.fn.__qualname__} and "
                f"{task_function.fn.__module__}.{task_function.fn.__qualname__}"
            )
    _tasks[task_function.name] = task_function


def get(name):
    """The registered task called `name`, or UnknownTaskError."""
    try:
        return _tasks[name]
    except KeyError:
        pass
    if any(find(name) for find in list(_finders)) and name in _tasks:
        return _tasks[name]
    raise UnknownTaskError(f"no @task is registered as {name!r}")


def add_finder(find):
    """Call `find(name)` for a name not registered (once per finder)."""
    if find not in _finders:
        _finders.append(find)


def resolve(fn_or_name):
    """A registered task from itself, its function or its name."""
    if isinstance(fn_or_name, str):
        return get(fn_or_name)
    name = getattr(fn_or_name, "name", None)
    if name is not None and _tasks.get(name) is fn_or_name:
        return fn_or_name
    raise UnknownTaskError(
        f"{fn_or_name!r} is not a @task; decorate it with @cq.task before delaying it"
    )


def names():
    return sorted(_tasks)
