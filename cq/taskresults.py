"""A cq row as Django's `TaskResult`, and Django's task signals for such rows.

cq's statuses map onto Django's four: what waits is READY (PENDING, QUEUED,
RETRY), what a worker holds is RUNNING (RUNNING, WAITING), SUCCESS is
SUCCESSFUL, every other final status is FAILED (FAILURE, INCOMPLETE, LOST,
REVOKED). cq keeps one error per task, the last attempt's, and the name of the
worker of the last attempt only: `errors` holds at most one entry, and
`worker_ids` has one entry per attempt, the earlier ones empty.

Django's signals go with `sender=` the backend class: `task_enqueued` from
`CQBackend.enqueue`, `task_started` by the worker as the function starts,
`task_finished` once the outcome has committed, relayed from cq's own
`task_finished` (cq.transitions sends it).
"""

import logging

from django.apps import apps
from django.core.exceptions import ValidationError

from . import registry, signals
from .djangotasks import (
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from .djangotasks import signals as django_signals
from .exceptions import UnknownTaskError

logger = logging.getLogger(__name__)

_STATUSES = {
    "P": TaskResultStatus.READY,
    "Q": TaskResultStatus.READY,
    "Y": TaskResultStatus.READY,
    "R": TaskResultStatus.RUNNING,
    "W": TaskResultStatus.RUNNING,
    "S": TaskResultStatus.SUCCESSFUL,
    "F": TaskResultStatus.FAILED,
    "I": TaskResultStatus.FAILED,
    "L": TaskResultStatus.FAILED,
    "E": TaskResultStatus.FAILED,
}
# Final statuses that no exception of the function caused: the exception
# class Django's `TaskError` names for them.
_NOT_RAISED = {"L": "cq.exceptions.TaskLost", "E": "cq.exceptions.TaskRevoked"}


def result_of(row, django_task=None):
    """The TaskResult of a cq row made through Django's task API."""
    status = _STATUSES[row.status]
    result = TaskResult(
        task=django_task or task_of(row),
        id=str(row.pk),
        status=status,
        enqueued_at=row.submitted,
        started_at=row.started,
        finished_at=row.finished if row.is_done else None,
        last_attempted_at=row.started,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend,
        errors=_errors(row),
        worker_ids=_worker_ids(row, status),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        # A frozen dataclass: Django's own backends set it the same way.
        object.__setattr__(result, "_return_value", row.result)
    return result


def task_of(row):
    """The Django Task a row runs, with the queue and priority it was enqueued with."""
    try:
        task_function = registry.get(row.func_name)
    except UnknownTaskError:
        task_function = None
    django_task = getattr(task_function, "django_task", None)
    if django_task is None:
        raise TaskResultDoesNotExist(
            f"task result {row.pk} runs {row.func_name!r}, which is not a Django task "
            "known in this process (is its module imported?)"
        )
    return django_task.using(priority=row.priority, queue_name=row.queue, backend=row.backend)


def get(backend_alias, result_id):
    """The row of `result_id` made through the backend `backend_alias`, or
    TaskResultDoesNotExist."""
    model = apps.get_model("cq", "Task")
    try:
        row = model.objects.filter(pk=result_id, backend=backend_alias).first()
    except (ValidationError, ValueError, TypeError) as exc:  # not a UUID: unknown too
        raise TaskResultDoesNotExist(result_id) from exc
    if row is None:
        raise TaskResultDoesNotExist(result_id)
    return row


def _worker_ids(row, status):
    # `retries` counts the attempts that failed and were retried (or requeued
    # after their worker died); the current one counts once it has started.
    attempts = row.retries + (status != TaskResultStatus.READY and row.started is not None)
    return [""] * (attempts - 1) + [row.worker] if attempts else []


def _errors(row):
    if not row.error or row.status == row.STATUS_SUCCESS:
        return []
    path = _NOT_RAISED.get(row.status) or exception_path(row.error, row.traceback)
    return [TaskError(exception_class_path=path, traceback=row.traceback or row.error)]


def exception_path(error, traceback):
    """The dotted path of the exception class of cq's `error` ("Name: message")
    and `traceback`, whose last line names it as Python prints it: with its
    module, unless that is `builtins`."""
    name = error.split(":", 1)[0].strip()
    for line in reversed(traceback.splitlines()):
        head = line.split(":", 1)[0]
        if head == name or head.endswith(f".{name}"):
            return head if "." in head else f"builtins.{head}"
    return f"builtins.{name}" if "." not in name else name


# ---- Django's signals for rows made through Django's API

# The rows (by id, str) of Django tasks whose function started in this
# process, until cq's task_finished arrives for them: that tells a Django task
# from a cq one without a query, and the row, which cq.completion updates with
# the outcome it records, makes the TaskResult without one either. A task
# retried elsewhere leaves its row here: hence a bound.
_started_here = {}
_STARTED_MAX = 10_000


def send_enqueued(backend, result):
    _send(django_signals.task_enqueued, backend, result)


def send_started(backend, row, django_task):
    """The function of a Django task starts (on a worker, or inline)."""
    if len(_started_here) >= _STARTED_MAX:
        _started_here.pop(next(iter(_started_here)), None)
    _started_here[str(row.pk)] = row
    _send(django_signals.task_started, backend, result_of(row, django_task))


def relay_finished(sender, task_id, status, **kwargs):
    """cq's task_finished -> Django's, for a row made through Django's API."""
    row = _started_here.pop(str(task_id), None)
    if row is None or row.status != status:
        if status == sender.STATUS_SUCCESS:
            return  # a cq task: a Django task succeeds only where its function ran
        # Revoked, lost, or failed without running here: rare, worth a query.
        row = sender.objects.filter(pk=task_id).exclude(backend="").first()
        if row is None:
            return
    try:
        backend = task_backends[row.backend]
        result = result_of(row)
    except Exception as exc:  # noqa: BLE001 - the outcome stands; the signal is a follow-up
        logger.warning("task_finished not sent id=%s error=%r", task_id, exc)
        return
    _send(django_signals.task_finished, backend, result)


def connect():
    """Relay cq's task_finished to Django's (once per process)."""
    signals.task_finished.connect(relay_finished, dispatch_uid="cq.taskresults.relay_finished")


def _send(signal, backend, result):
    # Robustly, as cq's own signals: a receiver that raises is logged and
    # never changes the task's outcome.
    for receiver, error in signal.send_robust(type(backend), task_result=result):
        if isinstance(error, Exception):
            logger.error(
                "signal receiver failed receiver=%r id=%s error=%r",
                receiver,
                result.id,
                error,
                exc_info=error,
            )
