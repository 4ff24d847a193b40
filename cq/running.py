"""The running task: what a task function receives as `cqt`, and the state of one run."""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from . import cancelling, logs
from .enqueue import delay
from .exceptions import TaskCancelled
from .progress import Progress

if TYPE_CHECKING:
    from .decorators import TaskRef
    from .models import Task


class RunningTask:
    """The first argument of a task function (`cqt`): the task's row, whose
    fields and methods read through (`cqt.pk`, `cqt.retries`, `cqt.chain(...)`),
    plus what only a running task does: launch subtasks and log.

    It also holds what this one run has done, which the execution needs and
    the row does not store: whether the run may have a tree (it launched a
    subtask, returned a task or logged) and its log lines not yet published.
    """

    def __init__(self, task):
        self.task = task
        # False while the run launched nothing and logged nothing: the
        # common, plain task then skips looking for subtasks and for logs.
        self.may_have_tree = False
        # Lines logged with publish=False, not yet in the tree's buffer.
        self.pending_logs = []
        self.progress_reports = Progress()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def __repr__(self):
        return f"<RunningTask {self.task}>"

    @property
    def cancelled(self) -> bool:
        """Whether this task was revoked while it runs: stop soon (its outcome
        will be discarded anyway). Read from memory: cheap in a tight loop."""
        return cancelling.is_cancelled(self.task.pk)

    def check_cancelled(self) -> None:
        """Raise TaskCancelled if this task was revoked while it runs."""
        if self.cancelled:
            raise TaskCancelled(f"task {self.task.pk} was revoked")

    def subtask(
        self,
        fn: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> "Task":
        """Launch a subtask; this task finishes only after it does."""
        self.may_have_tree = True
        return delay(fn, args, kwargs, parent=self.task, **fields)

    async def asubtask(
        self,
        fn: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> "Task":
        """`subtask()` from an `async def` task: run in the task's slot thread."""
        return await sync_to_async(self.subtask)(fn, args, kwargs, **fields)

    async def achain(
        self,
        fn: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> "Task":
        """`chain()` from an `async def` task: run in the task's slot thread."""
        return await sync_to_async(self.task.chain)(fn, args, kwargs, **fields)

    def chain(
        self,
        fn: "TaskRef",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        force_chain: bool = False,
        **fields: Any,
    ) -> "Task":
        """Run `fn(result, *args, **kwargs)` after this task succeeds (the row's
        `Task.chain`, spelled out here so that type checkers see it)."""
        return self.task.chain(fn, args, kwargs, force_chain, **fields)

    def errorback(
        self,
        fn: "TaskRef | Callable[..., Any]",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Call `fn(failed_task, error, *args, **kwargs)` if this task finally
        fails (the row's `Task.errorback`)."""
        self.task.errorback(fn, args, kwargs)

    def log(
        self, message: str, level: int = logging.INFO, publish: bool = True, limit: int = 40
    ) -> None:
        """Log a line to Python logging and to this task tree's log."""
        logs.log(self, message, level, publish, limit)

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report how far the task has come, e.g. `cqt.progress(3, 10, "page 3")`:
        stored on the row and pushed to its watchers (coalesced; cq.progress)."""
        self.progress_reports.report(self, done, total, message)
