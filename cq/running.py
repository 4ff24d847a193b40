"""The running task: what a task function receives as `cqt`, and the state of one run."""

import logging

from . import cancelling, logs
from .enqueue import delay
from .exceptions import TaskCancelled


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

    def __getattr__(self, name):
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

    def subtask(self, fn, args=(), kwargs=None, **fields):
        """Launch a subtask; this task finishes only after it does."""
        self.may_have_tree = True
        return delay(fn, args, kwargs, parent=self.task, **fields)

    def log(self, message, level=logging.INFO, publish=True, limit=40):
        """Log a line to Python logging and to this task tree's log."""
        logs.log(self, message, level, publish, limit)
