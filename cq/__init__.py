"""cq: durable, fast background tasks for Django, dispatched over Django Channels.

The public API: `from cq import task, delay, schedule_task, Task, RepeatingTask`.
The models load with Django's apps, so `Task` and `RepeatingTask` are imported
on first use, not when this package is.
"""

from typing import TYPE_CHECKING, Any

from .decorators import task
from .enqueue import delay, delay_many
from .exceptions import (
    AlreadyQueued,
    ConfigurationError,
    CQError,
    DuplicateSubmitError,
    ErrorbackRefused,
    InvalidProgress,
    InvalidSchedule,
    InvalidTaskOption,
    SerializationError,
    TaskCancelled,
    TaskNotRetryable,
    TimeLimitExceeded,
    UnknownTaskError,
    WaitTimeout,
)
from .schedules import schedule_task

__version__ = "0.1.0"

__all__ = [
    "AlreadyQueued",
    "CQError",
    "ConfigurationError",
    "DuplicateSubmitError",
    "ErrorbackRefused",
    "InvalidProgress",
    "InvalidSchedule",
    "InvalidTaskOption",
    "RepeatingTask",
    "SerializationError",
    "Task",
    "TaskCancelled",
    "TaskNotRetryable",
    "TimeLimitExceeded",
    "UnknownTaskError",
    "WaitTimeout",
    "__version__",
    "delay",
    "delay_many",
    "schedule_task",
    "task",
]

if TYPE_CHECKING:
    # For type checkers only: at runtime the models load on first use, below.
    from .models import RepeatingTask, Task

_MODELS = ("Task", "RepeatingTask")


def __getattr__(name: str) -> Any:
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'cq' has no attribute {name!r}")
