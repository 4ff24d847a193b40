"""What follows a task's final status: its chain, its parent, its errorbacks, its logs.

Lock order, the one rule every path follows to stay free of deadlocks: a
subtask's row before its parent's, and a task's row before the rows of the
tasks chained after it. A finishing task updates itself, then its followers
(`release_chained`), then locks its parent to see whether the parent is
complete, and finishing the parent goes on the same way upwards. `revoke()`
locks a whole tree in that order too, deepest subtasks first (cq/revoking.py).
"""

import itertools
import logging
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from . import doorbell, errorbacks, logs, storable, transitions
from .conf import settings as cq_settings

logger = logging.getLogger(__name__)


class Discarded(Exception):
    """The row left the status we expected (revoked, or swept as lost) while the
    task ran: its outcome is dropped and an atomic task's writes roll back."""


def finish(
    task,
    status,
    *,
    result=None,
    error="",
    traceback="",
    expected=None,
    has_tree=True,
):
    """Move `task` to a final status, then release what waited on it.

    `has_tree=False` says the run that ends here launched no subtask and
    logged nothing: the common, plain task skips looking for its tree's logs.

    Must run inside a transaction; raises Discarded if the row is no longer in
    `expected` status (default RUNNING), or no longer at the attempt `task`
    holds (`retries` changed: the sweeper requeued it from a worker presumed dead).
    """
    now = timezone.now()
    fields = {
        "result": result,
        "error": error,
        "traceback": traceback,
        "finished": now,
        "result_expiry": _expiry(task, now),
    }
    followers = transitions.finish(task, status, expected or task.STATUS_RUNNING, **fields)
    if followers is None:
        raise Discarded(task.pk)
    _finished(task, status, fields)
    _after_final(task, followers, has_tree)
    # After _after_final: on commit, the tree's log lines are stored before
    # waiters are told, so a `wait()` woken by the announcement sees them.
    doorbell.announce_on_commit([task.pk])


def finish_successes(results):
    """`finish` with SUCCESS for several RUNNING top-level tasks whose runs
    launched nothing and logged nothing, in one statement: `results` holds
    (task, result) pairs. Their rows must be locked by this transaction
    (cq.transitions.lock_claimed), so that none can have moved on."""
    if not results:
        return
    model = type(results[0][0])
    now = timezone.now()
    rows = [(task.pk, task.retries, result, _expiry(task, now)) for task, result in results]
    followers = transitions.finish_many(
        model, rows, model.STATUS_SUCCESS, model.STATUS_RUNNING, now
    )
    if len(followers) != len(rows):
        # Cannot happen while the rows are locked; if it did, rolling back
        # all of them (their rows stay RUNNING for recovery) is the safe way.
        raise RuntimeError(f"{len(rows) - len(followers)} locked task rows moved on")
    for (task, result), (_, _, _, expiry) in zip(results, rows, strict=True):
        fields = {"result": result, "error": "", "traceback": "", "finished": now}
        _finished(task, model.STATUS_SUCCESS, {**fields, "result_expiry": expiry})
        if followers[task.pk]:
            _after_final(task, followers[task.pk], has_tree=False)
    doorbell.announce_on_commit([task.pk for task, _ in results])


def _expiry(task, now):
    ttl = task.result_ttl if task.result_ttl is not None else cq_settings.RESULT_TTL
    return None if ttl is None else now + timedelta(seconds=ttl)


def _finished(task, status, fields):
    task.status = status
    for name, value in fields.items():
        setattr(task, name, value)
    # The status by name (SUCCESS), not its stored letter (S): the worker shows this line.
    logger.info("task id=%s name=%s status=%s", task.pk, task.func_name, task.Status(status).name)


def wait_for_subtasks(task, result):
    """Park a task whose function returned while its subtasks still run."""
    if not transitions.park(task, result):
        raise Discarded(task.pk)
    task.status, task.result = task.STATUS_WAITING, result


def complete_if_ready(task):
    """Finish a WAITING task (its row locked by the caller) once no subtask is active."""
    model = type(task)
    subtasks = model.objects.filter(parent_id=task.pk)
    if subtasks.filter(status__in=model.STATUS_ACTIVE).exists():
        return False
    # A revoked subtask never did its part: the parent did not complete either.
    failed = (
        subtasks.filter(status__in=model.STATUS_ERROR | {model.STATUS_REVOKED})
        .order_by("finished")
        .first()
    )
    if failed is not None:
        verb = "was revoked" if failed.status == model.STATUS_REVOKED else "failed"
        error = f"subtask {failed.func_name} {failed.pk} {verb}: {failed.error}"
        finish(
            task,
            model.STATUS_INCOMPLETE,
            result=task.result,
            error=error,
            expected=model.STATUS_WAITING,
        )
    else:
        result = task.result
        if task.waits_for_id is not None:
            result = model.objects.values_list("result", flat=True).get(pk=task.waits_for_id)
        finish(task, model.STATUS_SUCCESS, result=result, expected=model.STATUS_WAITING)
    return True


def notify_parent(task):
    """A subtask reached a final status: complete its parent if that was the last one."""
    if task.parent_id is None:
        return
    parent = type(task).objects.select_for_update().filter(pk=task.parent_id).first()
    if parent is not None and parent.status == task.STATUS_WAITING:
        complete_if_ready(parent)


def release_chained(task, followers):
    """Queue the tasks chained after `task` (now final) with its result as their
    first argument; after a failure only `force_chain` ones run, the rest are revoked."""
    succeeded = task.status == task.STATUS_SUCCESS
    for follower in followers:
        if succeeded or follower.force_chain:
            follower.submit(task.result if succeeded else None)
        else:
            follower.revoke()


def _after_final(task, followers, has_tree):
    if task.status in task.STATUS_ERROR:
        _call_errorbacks(task)
    if followers:
        pending = type(task).objects.filter(previous_id=task.pk, status=task.STATUS_PENDING)
        release_chained(task, list(pending))
    notify_parent(task)
    if task.root_id is not None or has_tree:
        _store_logs_when_tree_done(task)


def _call_errorbacks(task):
    failures = []
    for entry in task.errorbacks:
        name = errorbacks.name(entry)
        try:
            errorback = errorbacks.resolve(task, entry)
            with transaction.atomic():
                errorback(task, task.error, *entry["args"], **entry["kwargs"])
        except Exception as exc:
            logger.exception("errorback failed task id=%s errorback=%s", task.pk, name)
            failures.append(f"errorback {name} failed: {_describe(exc)}")
    if failures:
        _note_errorback_failures(task, failures)


def _describe(exc):
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a broken __str__ must not cost the note
        return f"{type(exc).__name__}: <unprintable>"


def _note_errorback_failures(task, failures):
    """Append the failed errorbacks to the task's `error`, where an operator
    looks (admin, cq_status), not only to the worker's stderr.

    The outcome is already written in this transaction: the note takes a
    savepoint of its own and touches only the error text of a row still in
    the status just written, so a failure here costs the note, never the outcome."""
    error = storable.text("\n".join([task.error, *failures]))
    try:
        with transaction.atomic():
            type(task).objects.filter(pk=task.pk, status=task.status).update(error=error)
    except Exception as exc:  # noqa: BLE001 - the outcome matters more than the note
        logger.warning("errorback failures not noted task id=%s error=%r", task.pk, exc)
    else:
        task.error = error


def _store_logs_when_tree_done(task):
    # Logs are a follow-up, not part of the outcome: they are stored once the
    # outcome has committed, in a transaction of their own, and a failure
    # there (the cache unreachable) costs only the lines.
    transaction.on_commit(partial(_store_logs, type(task), task.top_id))


def _store_logs(model, top_id):
    try:
        top_status = model.objects.values_list("status", flat=True).filter(pk=top_id).first()
        if top_status not in model.STATUS_DONE:
            return
        if model.objects.filter(root_id=top_id, status__in=model.STATUS_ACTIVE).exists():
            return
        logs.store(model, top_id)
    except Exception as exc:  # noqa: BLE001 - the outcome is committed; only lines are at stake
        # An error, not a warning: lines a user wrote are gone. Numbered, so
        # that whoever reads these lines sees how often it happens; the metrics
        # view reads the database from the web process and cannot count them.
        logger.error(
            "task log lines not stored top=%s failures_in_this_process=%s error=%r%s",
            top_id,
            next(_failed_log_stores),
            exc,
            LOCKED_HINT if "database is locked" in str(exc) else "",
        )


# Log stores that failed in this process since it started.
_failed_log_stores = itertools.count(1)
LOCKED_HINT = (
    " hint=SQLite needs WAL and transaction_mode IMMEDIATE under concurrent writers "
    "(system check cq.W008, docs/settings.md)"
)
