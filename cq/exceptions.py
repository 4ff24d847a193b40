"""cq's exceptions: one base class, one subclass per thing that can go wrong."""

from django.core.exceptions import ImproperlyConfigured


class CQError(Exception):
    """Base class of every error cq raises."""


class DuplicateSubmitError(CQError):
    """The task was already submitted; a task is queued once."""


class UnknownTaskError(CQError, LookupError):
    """No `@task` is registered under this name."""


class SerializationError(CQError, TypeError):
    """Arguments or a result cannot be stored as JSON."""


class InvalidTaskOption(CQError, ValueError):
    """An option given to `@task` or `.delay_args()` has a bad value."""


class InvalidSchedule(CQError, ValueError):
    """A cron string or a time zone of a repeating task is not valid."""


class InvalidProgress(CQError, ValueError):
    """`cqt.progress()` was given a bad value (a negative count, done above total)."""


class TaskNotRetryable(CQError, ValueError):
    """`Task.retry()` on a task that did not fail (it succeeded, was revoked or still runs)."""


class WaitTimeout(CQError, TimeoutError):
    """`task.wait(timeout, raise_on_timeout=True)` ran out of time before the task was done."""


class ConfigurationError(CQError, ImproperlyConfigured):
    """cq's settings do not fit together."""
