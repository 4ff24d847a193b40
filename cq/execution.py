"""Running one task: claim its row, call its function, record the outcome."""

import logging
import time
import traceback as tb
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from . import coroutines, doorbell, logs, registry, storable, time_limits, transitions
from .completion import (
    Discarded,
    complete_if_ready,
    finish,
    finish_successes,
    wait_for_subtasks,
)
from .conf import settings as cq_settings
from .exceptions import CQError, TimeLimitExceeded, UnknownTaskError
from .models import Task, check_json
from .running import RunningTask
from .savepoints import LazySavepoint

logger = logging.getLogger(__name__)


def run_task(task_id, worker=""):
    """Claim and run the task `task_id`; return it, or None if it was not
    claimable (already claimed, revoked, not due, or gone)."""
    task = claim(task_id, worker)
    if task is not None:
        run_claimed(task)
    return task


def run_claimed(task, observe=None):
    """Run a task this thread has claimed; returns the exception that failed
    it, if any (a direct call `fn(...)` raises it again). `observe(seconds)`
    is told how long its function took."""
    if task.parent_id is not None and _parent_revoked(task):
        _revoke_orphan(task)
        return None
    limit = _time_limit(task)
    if limit and not doorbell.inline():
        return time_limits.run_in_child(task, limit, partial(_record_stopped, task), observe)
    return execute(task, observe)


def _time_limit(task):
    try:
        return time_limits.limit_of(task, registry.get(task.func_name))
    except UnknownTaskError:
        return time_limits.limit_of(task, None)


def _record_stopped(task, exc):
    """Record the attempt of a task whose process was stopped (cq.time_limits)."""
    try:
        task_function = registry.get(task.func_name)
    except UnknownTaskError:
        task_function = None
    _record_error(RunningTask(task), task_function, exc)


def run_group(tasks, observe=None):
    """Run tasks this thread claimed, in order (a worker's slot; cq.slots).

    Consecutive atomic top-level tasks run in one transaction, each in a
    savepoint of its own: one that fails rolls back only its own writes. The
    outcomes of those that return a plain value are written by one statement
    and committed together; any other outcome (a failure, a tree, a returned
    task) is recorded as usual and commits the transaction at once, as does a
    group that has run for CQ_GROUP_COMMIT_WINDOW, so no outcome waits long.
    Every other task runs on its own (`run_claimed`). `observe(seconds)` is
    told how long each task took."""
    pending = list(tasks)
    while pending:
        shared = 0
        while shared < len(pending) and _may_share_a_transaction(pending[shared]):
            shared += 1
        if shared > 1:
            pending = _run_together(pending[:shared], observe) + pending[shared:]
        else:
            run_claimed(pending.pop(0), observe)


def _may_share_a_transaction(task):
    # A subtask's outcome locks its parent's row: committed at once, never held.
    if task.parent_id is not None or task.root_id is not None:
        return False
    try:
        task_function = registry.get(task.func_name)
    except UnknownTaskError:
        return False
    # A time-limited task runs in a process of its own (cq.time_limits).
    return task_function.atomic and not time_limits.limit_of(task, task_function)


def _run_together(tasks, observe):
    """Run atomic top-level tasks in one transaction; returns those it left
    for the next one (the window closed, or an outcome had to commit)."""
    model = type(tasks[0])
    began = time.monotonic()
    window = cq_settings.GROUP_COMMIT_WINDOW
    left = []
    with transaction.atomic():
        attempts = transitions.lock_claimed(model, [task.pk for task in tasks], tasks[0].worker)
        successes = []
        for index, task in enumerate(tasks):
            if index and time.monotonic() - began > window:
                left = tasks[index:]
                break
            if attempts.get(task.pk) != task.retries:
                # Revoked, or requeued from a worker presumed dead, since the claim.
                logger.info("task not run id=%s: its row moved on since the claim", task.pk)
                continue
            plain, value = _run_in_savepoint(task, observe)
            if plain:
                successes.append((task, value))
            elif index + 1 < len(tasks):
                # Its outcome touched other rows (or failed): commit it now.
                left = tasks[index + 1 :]
                break
        finish_successes(successes)
    return left


def _run_in_savepoint(task, observe):
    """Run a task inside the group's transaction, in a savepoint taken at its
    first statement (cq.savepoints); (True, result) when it returned a plain
    value whose SUCCESS the group records, else (False, None) once its outcome
    is recorded here."""
    run = RunningTask(task)
    task_function = registry.get(task.func_name)
    savepoint = LazySavepoint()
    try:
        with transaction.get_connection().execute_wrapper(savepoint):
            value = _call(task_function, run, observe)
            savepoint.check_not_marked()
            plain = not run.may_have_tree and not isinstance(value, (RunningTask, Task))
            if plain:
                _check_result(task, value)
            else:
                _record_return(run, value)
        savepoint.release()
        return plain, value if plain else None
    except Discarded:
        savepoint.rollback()
        logger.info("task outcome discarded id=%s status changed while running", task.pk)
    except BaseException as exc:  # noqa: BLE001 - a task may raise anything, even SystemExit
        savepoint.rollback()
        _record_error(run, task_function, exc)
    return False, None


def claim(task_id, worker=""):
    """QUEUED -> RUNNING with a conditional update: of any number of workers
    holding a doorbell for this task, exactly one wins."""
    task = transitions.claim(Task, task_id, worker, timezone.now())
    if task is None:
        logger.debug("task not claimable id=%s", task_id)
    return task


def _parent_revoked(task):
    # A running parent can still commit subtasks after revoke() read its tree
    # (a non-atomic parent at any time, an atomic one just before revoke took
    # its row); revoke leaves them to this check rather than lock them out of order.
    return Task.objects.filter(pk=task.parent_id, status=Task.STATUS_REVOKED).exists()


def _revoke_orphan(task):
    """A claimed subtask of a REVOKED task: it does not run; it ends REVOKED,
    and its chained tasks are revoked as after any outcome but success."""
    logger.info("task not run id=%s parent=%s revoked", task.pk, task.parent_id)
    try:
        with transaction.atomic():
            error = f"revoked: its parent {task.parent_id} was revoked"
            finish(task, Task.STATUS_REVOKED, error=error)
    except Discarded:
        logger.info("task outcome discarded id=%s status changed while running", task.pk)


def execute(task, observe=None):
    """Run a claimed (RUNNING) task and record SUCCESS, WAITING, RETRY or
    FAILURE; returns the exception it raised, if any."""
    run = RunningTask(task)
    try:
        task_function = registry.get(task.func_name)
    except UnknownTaskError as exc:
        _record_error(run, None, exc)
        return exc
    try:
        if task_function.atomic:
            with transaction.atomic():
                _record_return(run, _call(task_function, run, observe))
        else:
            value = _call(task_function, run, observe)
            with transaction.atomic():
                _record_return(run, value)
    except Discarded:
        logger.info("task outcome discarded id=%s status changed while running", task.pk)
    except BaseException as exc:  # noqa: BLE001 - a task may raise anything, even SystemExit
        _record_error(run, task_function, exc)
        return exc
    return None


def _call(task_function, run, observe=None):
    began = time.monotonic()
    try:
        if task_function.is_coroutine:
            return coroutines.call(
                task_function.fn, run.task.pk, run, *run.task.args, **run.task.kwargs
            )
        return task_function.fn(run, *run.task.args, **run.task.kwargs)
    finally:
        if observe is not None:
            observe(time.monotonic() - began)
        logs.publish_pending(run)
        run.progress_reports.finish(run)


def _record_return(run, value):
    task = run.task
    if isinstance(value, RunningTask):
        value = value.task
    if isinstance(value, Task):
        _adopt(run, value)
        result = None
    else:
        _check_result(task, value)
        result = value
    if run.may_have_tree:
        # This update locks our row after any child row we touched (lock order:
        # children first). A subtask finishing on another worker then either
        # sees us WAITING and completes us, or we see it done here.
        wait_for_subtasks(task, result)
        complete_if_ready(task)
    else:
        finish(task, Task.STATUS_SUCCESS, result=result, has_tree=False)


def _check_result(task, value):
    try:
        check_json(value, "result")
    except CQError as exc:
        raise CQError(
            f"{task.func_name} returned a value that is not JSON the database can store: {exc}"
        ) from exc


def _adopt(run, returned):
    """The run returned another task: finish with that task's result once it is done."""
    task = run.task
    if returned.pk == task.pk or _chained_after(returned, task):
        raise CQError(
            f"{task.func_name} returned a task that can only start after it finishes; "
            "return a subtask (cqt.subtask(...)) or a chain that starts with one"
        )
    if returned.parent_id not in (None, task.pk):
        raise CQError(f"{task.func_name} returned task {returned.pk}, a subtask of another task")
    Task.objects.filter(pk=returned.pk, parent__isnull=True).update(
        parent_id=task.pk, root_id=task.top_id
    )
    Task.objects.filter(pk=task.pk).update(waits_for_id=returned.pk)
    task.waits_for_id = returned.pk
    run.may_have_tree = True


def _chained_after(returned, task):
    """Whether `returned` is in a chain that starts after `task`: waiting on it would
    wait forever."""
    previous_id = returned.previous_id
    while previous_id is not None and previous_id != task.pk:
        previous_id = (
            Task.objects.filter(pk=previous_id).values_list("previous_id", flat=True).first()
        )
    return previous_id == task.pk


def _record_error(run, task_function, exc):
    task = run.task
    error, trace = describe_error(exc)
    with transaction.atomic():
        if (
            (not isinstance(exc, CQError) or isinstance(exc, TimeLimitExceeded))
            and task_function is not None
            and task_function.should_retry(exc, task.retries)
        ):
            _schedule_retry(task, task_function, error, trace)
            return
        logger.warning("task failed id=%s name=%s error=%s", task.pk, task.func_name, error)
        try:
            finish(
                task, Task.STATUS_FAILURE, error=error, traceback=trace, has_tree=run.may_have_tree
            )
        except Discarded:
            logger.info("task failure discarded id=%s status changed while running", task.pk)


def describe_error(exc):
    """(error, traceback) of `exc` as text the database can store."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not cost the outcome
        message = f"<unprintable {type(exc).__name__}>"
    error = f"{type(exc).__name__}: {message}"
    return storable.text(error), storable.text("".join(tb.format_exception(exc)))


def _schedule_retry(task, task_function, error, trace):
    attempt = task.retries + 1
    # Inline, nobody but the caller would wait out the backoff: retry at once.
    countdown = 0 if doorbell.inline() else task_function.retry_countdown(attempt)
    run_after = timezone.now() + timedelta(seconds=countdown) if countdown else None
    # With no delay the task goes straight back to QUEUED; with one it waits as
    # RETRY and the worker's housekeeping queues it when due.
    transitions.retry(task, run_after, error, trace)
    logger.info(
        "task retry id=%s name=%s attempt=%s countdown=%s error=%s",
        task.pk,
        task.func_name,
        attempt,
        countdown,
        error,
    )
    if not countdown:
        doorbell.ring_on_commit([task.pk], task.queue)
