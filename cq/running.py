"""The running task: what a task function receives as `cqt`, and the state of one run."""

import logging

from . import logs
from .enqueue import delay
from .progress import Progress


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

    def __getattr__(self, name):
        return getattr(self.task, name)

    def __repr__(self):
        return f"<RunningTask {self.task}>"

    def subtask(self, fn, args=(), kwargs=None, **fields):
        """Launch a subtask; this task finishes only after it does."""
        self.may_have_tree = True
        return delay(fn, args, kwargs, parent=self.task, **fields)

    def log(self, message, level=logging.INFO, publish=True, limit=40):
        """Log a line to Python logging and to this task tree's log."""
        logs.log(self, message, level, publish, limit)

    def progress(self, done, total=None, message=""):
        """Report how far the task has come, e.g. `cqt.progress(3, 10, "page 3")`:
        stored on the row and pushed to its watchers (coalesced; cq.progress)."""
        self.progress_reports.report(self, done, total, message)
