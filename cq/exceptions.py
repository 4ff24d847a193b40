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


class TimeLimitExceeded(CQError, TimeoutError):
    """A task ran past its time limit and was stopped (`@task(time_limit=...)`)."""


class TaskCancelled(CQError):
    """The running task was revoked: raised by `cqt.check_cancelled()`."""


class ConfigurationError(CQError, ImproperlyConfigured):
    """cq's settings do not fit together."""


class AlreadyQueued(CQError):
    """A unique task with this key is already active (`@task(unique="raise")`)."""

    def __init__(self, message, task=None):
        super().__init__(message)
        # The active task that holds the key.
        self.task = task


class ErrorbackRefused(CQError):
    """A stored errorback reference fails its signature check: it is not run."""


class TaskLost(CQError):
    """The task's worker died while it ran (status LOST); Django's task API reports it as
    the error of a FAILED result."""


class TaskRevoked(CQError):
    """The task was revoked (status REVOKED); Django's task API reports it as the error
    of a FAILED result."""
