"""cq: durable, fast background tasks for Django, dispatched over Django Channels.

The public API: `from cq import task, delay, schedule_task, Task, RepeatingTask`.
The models load with Django's apps, so `Task` and `RepeatingTask` are imported
on first use, not when this package is.
"""

from .decorators import task
from .enqueue import delay, delay_many
from .exceptions import (
    ConfigurationError,
    CQError,
    DuplicateSubmitError,
    InvalidProgress,
    InvalidSchedule,
    InvalidTaskOption,
    SerializationError,
    TaskNotRetryable,
    UnknownTaskError,
    WaitTimeout,
)
from .schedules import schedule_task

__version__ = "0.1.0"

__all__ = [
    "CQError",
    "ConfigurationError",
    "DuplicateSubmitError",
    "InvalidProgress",
    "InvalidSchedule",
    "InvalidTaskOption",
    "RepeatingTask",
    "SerializationError",
    "Task",
    "TaskNotRetryable",
    "UnknownTaskError",
    "WaitTimeout",
    "__version__",
    "delay",
    "delay_many",
    "schedule_task",
    "task",
]

_MODELS = ("Task", "RepeatingTask")


def __getattr__(name):
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'cq' has no attribute {name!r}")
