"""Every status change of a task row, in one place.

Each transition is one guarded UPDATE: it changes the row only while the row
is in the status the transition expects (and, for a task that has run, still
at the attempt the caller holds: its `retries` count). Workers, sweepers and
revokes that race each other therefore never overwrite one another; the loser
learns it from the return value. Nothing else in cq writes a task's status.

    insert        (new) -> PENDING or QUEUED        .delay(), delay_many()
    submit        PENDING -> QUEUED                 Task.submit(), a released chain
    release_due   QUEUED or RETRY, due -> QUEUED    housekeeping (countdowns, backoff)
    claim         QUEUED, due -> RUNNING            a worker (claim_batch: several at once)
    unclaim       RUNNING -> QUEUED                 a stopping worker's never-started claims
    defer         RUNNING -> QUEUED, not yet due    claimed over its rate limit (cq.ratelimits)
    park          RUNNING -> WAITING                its subtasks still run
    retry         RUNNING -> QUEUED or RETRY        an attempt failed, retries are left
    requeue       RUNNING -> QUEUED                 its worker died (cq.recovery)
    finish        RUNNING or WAITING -> final       Success, Failure, Incomplete, Lost, Revoked
    revoke        any active -> REVOKED             Task.revoke(), in lock order (cq.revoking)

The signals of cq.signals are sent from here. Functions take the Task model
(or an instance of it) from their caller, so that this module needs no import
of cq.models.
"""

import logging
from functools import partial

from django.db import transaction
from django.utils import timezone

from . import signals, statements

logger = logging.getLogger(__name__)


def insert(task):
    """INSERT a new row; its status (PENDING or QUEUED) is set by the caller."""
    statements.insert(task)
    if task.status == task.STATUS_QUEUED:
        _send_on_commit(signals.task_enqueued, type(task), [task.pk])


def insert_many(tasks):
    """INSERT new QUEUED rows, a thousand per statement."""
    if tasks:
        model = type(tasks[0])
        model.objects.bulk_create(tasks, batch_size=1000)
        _send_on_commit(signals.task_enqueued, model, [task.pk for task in tasks])


def submit(task, args, now):
    """PENDING -> QUEUED with `args` as its arguments; False if it was not PENDING."""
    model = type(task)
    queued = model.objects.filter(pk=task.pk, status=model.STATUS_PENDING).update(
        status=model.STATUS_QUEUED, args=args, submitted=now
    )
    if queued:
        _send_on_commit(signals.task_enqueued, model, [task.pk])
    return bool(queued)


def release_due(model, now, limit):
    """QUEUED or RETRY rows whose `run_after` has come -> QUEUED, `run_after`
    cleared; returns their (id, queue) pairs (at most `limit`), to be rung."""
    rows = list(model.objects.due(now).values_list("pk", "queue")[:limit])
    if rows:
        model.objects.due(now).filter(pk__in=[pk for pk, _ in rows]).update(
            status=model.STATUS_QUEUED, run_after=None
        )
    return rows


def claim(model, task_id, worker, now):
    """QUEUED (and due) -> RUNNING: of any number of workers holding a doorbell
    for this task, exactly one gets the row back; the others get None."""
    task = statements.claim(model, task_id, worker, now, model.STATUS_QUEUED, model.STATUS_RUNNING)
    if task is not None:
        _send(signals.task_started, model, [task.pk])
    return task


def claim_batch(model, queues, limit, worker, now):
    """Up to `limit` due QUEUED rows of `queues` -> RUNNING, highest priority
    first, then oldest: what a worker with free slots runs next."""
    tasks = statements.claim_batch(
        model, queues, limit, worker, now, model.STATUS_QUEUED, model.STATUS_RUNNING
    )
    if tasks:
        _send(signals.task_started, model, [task.pk for task in tasks])
    return tasks


def unclaim(model, task_ids, worker):
    """RUNNING -> QUEUED for claimed rows that `worker` never started (it is
    stopping): no attempt is counted. Returns how many went back."""
    return model.objects.filter(pk__in=task_ids, status=model.STATUS_RUNNING, worker=worker).update(
        status=model.STATUS_QUEUED, started=None, worker=""
    )


def defer(task, run_after):
    """RUNNING -> QUEUED until `run_after`, no attempt counted: the task was
    claimed before its rate limit lets it start. False if the row moved on."""
    moved = statements.move(
        type(task),
        task.pk,
        task.STATUS_RUNNING,
        attempt=task.retries,
        status=task.STATUS_QUEUED,
        run_after=run_after,
        started=None,
        worker="",
    )
    return moved is not None


def park(task, result):
    """RUNNING -> WAITING, keeping `result` until its subtasks are done;
    False if the row moved on (revoked, or requeued by a sweeper)."""
    moved = statements.move(
        type(task),
        task.pk,
        task.STATUS_RUNNING,
        attempt=task.retries,
        status=task.STATUS_WAITING,
        result=result,
    )
    if moved is not None:
        _send_on_commit(signals.task_waiting, type(task), [task.pk])
    return moved is not None


def retry(task, run_after, error, traceback):
    """RUNNING -> QUEUED (or RETRY, until `run_after`), one more attempt counted;
    False if the row moved on."""
    status = task.STATUS_RETRY if run_after else task.STATUS_QUEUED
    moved = statements.move(
        type(task),
        task.pk,
        task.STATUS_RUNNING,
        attempt=task.retries,
        status=status,
        retries=task.retries + 1,
        run_after=run_after,
        error=error,
        traceback=traceback,
        attempts=_attempts(task, error),
    )
    if moved is not None:
        _send_on_commit(signals.task_retried, type(task), [task.pk], status=status)
    return moved is not None


def requeue(task, error):
    """RUNNING -> QUEUED after its worker died, one more attempt counted; False
    if another sweeper or the task's own worker got there first."""
    moved = statements.move(
        type(task),
        task.pk,
        task.STATUS_RUNNING,
        attempt=task.retries,
        status=task.STATUS_QUEUED,
        retries=task.retries + 1,
        run_after=None,
        error=error,
        attempts=_attempts(task, error),
    )
    if moved is not None:
        _send_on_commit(signals.task_retried, type(task), [task.pk], status=task.STATUS_QUEUED)
    return moved is not None


def finish(task, status, expected, **fields):
    """`expected` (RUNNING or WAITING) -> the final `status`, with `fields`.

    Returns None if the row left `expected` or the attempt `task` holds
    (revoked, or requeued from a worker presumed dead); otherwise the number
    of PENDING tasks chained after it, found by the same statement."""
    followers = statements.move(
        type(task), task.pk, expected, attempt=task.retries, status=status, **fields
    )
    if followers is not None:
        _send_on_commit(signals.task_finished, type(task), [task.pk], status=status)
    return followers


def finish_many(model, rows, status, expected, finished):
    """`finish` for several rows of one status at once, in one statement:
    `rows` holds (id, retries, result, result_expiry). Returns {id: number of
    PENDING tasks chained after it} for the rows that changed."""
    followers = statements.finish_many(model, rows, status, expected, finished)
    _send_on_commit(signals.task_finished, model, list(followers), status=status)
    return followers


def lock_claimed(model, task_ids, worker):
    """Lock the rows of tasks `worker` claimed, for the rest of the transaction:
    no revoke or sweeper changes them meanwhile. Returns {id: retries} of the
    rows still RUNNING there (a row missing was revoked or requeued)."""
    return statements.lock_running(model, task_ids, worker, model.STATUS_RUNNING)


def revoke(model, ids, now):
    """The active rows among `ids` -> REVOKED, in one UPDATE (the caller
    chooses the order rows are locked in); returns how many changed."""
    active = model.objects.filter(pk__in=ids, status__in=model.STATUS_ACTIVE)
    revoked = active.update(status=model.STATUS_REVOKED, finished=now, error="revoked")
    if revoked and signals.task_finished.has_listeners(model):
        # This transaction sees its own writes: the rows revoked at `now`.
        changed = model.objects.filter(pk__in=ids, status=model.STATUS_REVOKED, finished=now)
        _send_on_commit(
            signals.task_finished,
            model,
            list(changed.values_list("pk", flat=True)),
            status=model.STATUS_REVOKED,
        )
    return revoked


def _attempts(task, error):
    """The row's attempts with the one ending now added: the row itself keeps
    only the latest attempt's error and timings. Safe to compute here: the
    move is guarded by the attempt, so no other writer appends meanwhile."""
    ended = {
        "attempt": task.retries + 1,
        "worker": task.worker,
        "started": task.started.isoformat() if task.started else None,
        "ended": timezone.now().isoformat(),
        "error": error,
    }
    return [*(task.attempts or []), ended]


def _send_on_commit(signal, model, task_ids, **kwargs):
    # Most projects have no receiver: then a task pays nothing for signals.
    if task_ids and signal.has_listeners(model):
        transaction.on_commit(partial(_send, signal, model, task_ids, **kwargs))


def _send(signal, model, task_ids, **kwargs):
    if not signal.has_listeners(model):
        return
    for task_id in task_ids:
        for receiver, error in signal.send_robust(model, task_id=task_id, **kwargs):
            if isinstance(error, Exception):
                logger.error(
                    "signal receiver failed receiver=%r id=%s error=%r",
                    receiver,
                    task_id,
                    error,
                    exc_info=error,
                )
