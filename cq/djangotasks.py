"""Django's task API, from wherever this Django has it: the one import shim.

Django 6 ships it as `django.tasks` (DEP 14); on Django 5.2 the `django-tasks`
backport (`pip install "channels-cq[tasks]"`) provides the same API as the
module `django_tasks`. The two differ in names only where this module says
so (`InvalidTask` is the backport's `InvalidTaskError`). When both are
installed, Django's own wins: that is the one `django.tasks.task` uses.
"""

from importlib.util import find_spec

from .exceptions import ConfigurationError

if find_spec("django.tasks") is not None:
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, signals, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
elif find_spec("django_tasks") is not None:
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, signals, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.utils import normalize_json

    SOURCE = "django_tasks"
else:
    raise ConfigurationError(
        "cq.backends.CQBackend needs Django's task API: Django 6 has it as django.tasks; "
        'on Django 5.2 install the backport: pip install "channels-cq[tasks]"'
    )

__all__ = [
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "signals",
    "task_backends",
]
