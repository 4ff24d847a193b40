"""Running tasks inline: a direct call `fn(...)`, or `.delay()` with CQ_SERIAL.

`SerialTask` stands in for the Task row: it offers the same `cqt` API and the
same outcomes (SUCCESS, INCOMPLETE, FAILURE, REVOKED, retries, chains,
errorbacks, tree logs), runs subtasks and chains at once in this process, and
writes no rows. Under CQ_SERIAL the arguments are checked as `.delay()` checks
them, so code that passes tests in serial mode passes them with workers too.
"""

import logging
import uuid
from contextlib import nullcontext

from django.db import transaction

from . import logs, registry
from .conf import settings as cq_settings
from .exceptions import CQError, DuplicateSubmitError

logger = logging.getLogger(__name__)


def _status(name):
    from .models import Task

    return getattr(Task, f"STATUS_{name}")


class SerialTask:
    def __init__(self, task_function, args, kwargs, parent=None, previous=None,
                 force_chain=False):
        self.task_function = task_function
        self.id = self.pk = uuid.uuid4()
        self.func_name = task_function.name
        self.args, self.kwargs = list(args), dict(kwargs or {})
        self.status = _status("PENDING")
        self.result, self.error, self.traceback = None, "", ""
        self.parent, self.previous, self.force_chain = parent, previous, force_chain
        self.retries = 0
        self.subtasks, self.logs, self.errorbacks, self.followers = [], [], [], []
        self._pending_logs = []

    def __repr__(self):
        return f"<SerialTask {self.func_name} {self.status}>"

    @property
    def top(self):
        above = self.parent or self.previous
        return above.top if above is not None else self

    @property
    def is_done(self):
        from .models import Task

        return self.status in Task.STATUS_DONE

    @property
    def is_error(self):
        from .models import Task

        return self.status in Task.STATUS_ERROR

    # ---- the `cqt` API

    def subtask(self, fn, args=(), kwargs=None, **fields):
        child = SerialTask(*_checked(fn, args, kwargs, fields), parent=self)
        self.subtasks.append(child)
        return child.run()

    def chain(self, fn, args=(), kwargs=None, force_chain=False, **fields):
        follower = SerialTask(
            *_checked(fn, args, kwargs, fields), parent=self.parent, previous=self,
            force_chain=force_chain,
        )
        if self.parent is not None:
            self.parent.subtasks.append(follower)
        self.followers.append(follower)
        if self.is_done:
            self._release(follower)
        return follower

    def errorback(self, fn, args=(), kwargs=None):
        self.errorbacks.append((registry.resolve(fn), list(args), dict(kwargs or {})))

    def log(self, message, level=logging.INFO, publish=True, limit=40):
        self._pending_logs.append(logs.make_line(self, message, level))
        if publish:
            if limit:
                del self._pending_logs[:-limit]
            self._publish_logs()

    # ---- the Task API a caller uses

    def wait(self, timeout=None):
        return self

    def refresh_from_db(self, *args, **kwargs):
        """Nothing to refresh: the stand-in is already final."""

    def submit(self, *pre_args):
        if self.status == _status("REVOKED"):
            return self
        if self.status != _status("PENDING"):
            raise DuplicateSubmitError(f"task {self.pk} was already submitted")
        self.args = _checked(self.task_function, [*pre_args, *self.args], self.kwargs, {})[1]
        return self.run()

    def revoke(self):
        if not self.is_done:
            self.status, self.error = _status("REVOKED"), "revoked"
        for follower in self.followers:
            follower.revoke()
        return self

    # ---- running

    def run(self, direct=False):
        """Run now. A direct call re-raises the function's exception and retries
        nothing; a serial `.delay()` records the outcome, as a worker would."""
        while True:
            self.status = _status("RUNNING")
            try:
                with transaction.atomic() if self.task_function.atomic else nullcontext():
                    value = self.task_function.fn(self, *self.args, **self.kwargs)
                    self._settle(value, direct)
                break
            except Exception as exc:
                if direct:
                    self._fail(exc)
                    self._after_final()
                    raise
                if isinstance(exc, CQError) or not self.task_function.should_retry(
                    exc, self.retries
                ):
                    self._fail(exc)
                    break
                # Serial retries run at once: waiting out the backoff helps no test.
                self.retries += 1
        self._after_final()
        return self

    def _settle(self, value, direct):
        if isinstance(value, SerialTask):
            self._adopt(value)
            return
        if not direct:
            from .models import check_json

            check_json(value, f"result of {self.func_name}")
        self.result = value
        failed = [child for child in self.subtasks
                  if child.is_error or child.status == _status("REVOKED")]
        if failed:
            child = failed[0]
            verb = "was revoked" if child.status == _status("REVOKED") else "failed"
            self.status = _status("INCOMPLETE")
            self.error = f"subtask {child.func_name} {child.pk} {verb}: {child.error}"
        else:
            self.status = _status("SUCCESS")

    def _adopt(self, returned):
        above = returned
        while above is not None:
            if above is self:
                raise CQError(
                    f"{self.func_name} returned a task that can only start after it "
                    "finishes; return a subtask (cqt.subtask(...)) or a chain that starts "
                    "with one"
                )
            above = above.previous
        self.result = returned.result
        if returned.status == _status("SUCCESS"):
            self.status = _status("SUCCESS")
        else:
            self.status = _status("INCOMPLETE")
            self.error = f"returned task {returned.func_name} {returned.pk} did not succeed: " \
                f"{returned.error or returned.get_status_display()}"

    def get_status_display(self):
        from .models import Task

        return dict(Task.STATUS_CHOICES)[self.status]

    def _fail(self, exc):
        from .execution import describe_error

        self.status = _status("FAILURE")
        self.error, self.traceback = describe_error(exc)

    def _after_final(self):
        self._publish_logs()
        if self.is_error:
            self._call_errorbacks()
        for follower in self.followers:
            self._release(follower)

    def _release(self, follower):
        if follower.status != _status("PENDING"):
            return
        if self.status == _status("SUCCESS"):
            follower.submit(self.result)
        elif follower.force_chain:
            follower.submit(None)
        else:
            follower.revoke()

    def _call_errorbacks(self):
        for errorback, args, kwargs in self.errorbacks:
            try:
                with transaction.atomic():
                    errorback.fn(self, self.error, *args, **kwargs)
            except Exception:
                logger.exception("errorback failed task id=%s errorback=%s",
                                 self.pk, errorback.name)

    def _publish_logs(self):
        top = self.top
        top.logs.extend(self._pending_logs)
        del top.logs[:-cq_settings.MAX_LOG_LINES]
        self._pending_logs.clear()


def _checked(fn, args, kwargs, fields):
    """(task function, args, kwargs) after the checks `.delay()` makes."""
    from .models import _build

    task_function = registry.resolve(fn)
    fields = {k: v for k, v in fields.items() if k not in ("parent", "previous", "root_id")}
    built = _build(task_function, args, kwargs, fields)
    return task_function, built.args, built.kwargs


def delay(task_function, args, kwargs, submit=True):
    """`.delay()` under CQ_SERIAL: run now (or keep PENDING for `submit()`)."""
    task = SerialTask(task_function, args, kwargs)
    return task.submit() if submit else task


def call(task_function, args, kwargs):
    """A direct call `fn(*args, **kwargs)`: run inline and return the result."""
    return SerialTask(task_function, args, kwargs).run(direct=True).result
