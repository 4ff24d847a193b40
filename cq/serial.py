"""Running tasks inline: a direct call `fn(...)`, or `.delay()` with CQ_SERIAL.

`SerialTask` stands in for the Task row: it offers the same `cqt` API, runs
subtasks and chains at once in this process, and writes no rows.
"""

import logging
import traceback as tb
import uuid
from contextlib import nullcontext

from django.db import transaction

from . import registry

logger = logging.getLogger("cq.tasks")


class SerialTask:
    def __init__(self, task_function, args, kwargs, parent=None, previous=None):
        from .models import Task

        self.id = self.pk = uuid.uuid4()
        self.func_name = task_function.name
        self.args, self.kwargs = list(args), dict(kwargs or {})
        self.status = Task.STATUS_QUEUED
        self.result, self.error, self.traceback = None, "", ""
        self.parent, self.previous = parent, previous
        self.subtasks, self.logs, self.errorbacks = [], [], []
        self._followers = []

    def __repr__(self):
        return f"<SerialTask {self.func_name} {self.status}>"

    @property
    def top(self):
        return self.parent.top if self.parent is not None else self

    @property
    def is_done(self):
        from .models import Task

        return self.status in Task.STATUS_DONE

    def subtask(self, fn, args=(), kwargs=None, **fields):
        child = run_inline(registry.resolve(fn), args, kwargs, parent=self, reraise=False)
        self.subtasks.append(child)
        return child

    def chain(self, fn, args=(), kwargs=None, force_chain=False, **fields):
        follower = (registry.resolve(fn), list(args), kwargs, force_chain)
        if self.is_done:
            return self._run_follower(*follower)
        self._followers.append(follower)
        return self

    def errorback(self, fn, args=(), kwargs=None):
        self.errorbacks.append((registry.resolve(fn), list(args), dict(kwargs or {})))

    def log(self, message, level=logging.INFO, publish=True, limit=40):
        logger.log(level, "task id=%s name=%s %s", self.id, self.func_name, message)
        self.top.logs.append({
            "message": str(message), "level": logging.getLevelName(level),
            "origin": str(self.id), "task": self.func_name,
        })

    def wait(self, timeout=None):
        return self

    def revoke(self):
        from .models import Task

        self.status = Task.STATUS_REVOKED
        return self

    def _run_follower(self, task_function, args, kwargs, force_chain):
        from .models import Task

        if self.status == Task.STATUS_SUCCESS:
            return run_inline(task_function, [self.result, *args], kwargs, previous=self,
                              parent=self.parent, reraise=False)
        if force_chain:
            return run_inline(task_function, [None, *args], kwargs, previous=self,
                              parent=self.parent, reraise=False)
        return None


def run_inline(task_function, args, kwargs, parent=None, previous=None, reraise=True):
    """Run a task now, in this process. A direct call re-raises the task's
    exception; a serial `.delay()` records it on the stand-in, as a worker would."""
    from .models import Task

    cqt = SerialTask(task_function, args, kwargs, parent=parent, previous=previous)
    cqt.status = Task.STATUS_RUNNING
    try:
        with transaction.atomic() if task_function.atomic else nullcontext():
            value = task_function.fn(cqt, *cqt.args, **cqt.kwargs)
    except Exception as exc:
        cqt.status = Task.STATUS_FAILURE
        cqt.error = f"{type(exc).__name__}: {exc}"
        cqt.traceback = "".join(tb.format_exception(exc))
        for errorback, eb_args, eb_kwargs in cqt.errorbacks:
            errorback.fn(cqt, cqt.error, *eb_args, **eb_kwargs)
        if reraise:
            raise
    else:
        if isinstance(value, SerialTask):
            cqt.status, value = value.status, value.result
        elif any(child.status in Task.STATUS_ERROR for child in cqt.subtasks):
            cqt.status = Task.STATUS_INCOMPLETE
        else:
            cqt.status = Task.STATUS_SUCCESS
        cqt.result = value
    for follower in cqt._followers:
        cqt._run_follower(*follower)
    return cqt

