"""The sweeper: recovering the tasks of dead workers.

A worker that dies (kill -9, OOM, machine gone) leaves its tasks RUNNING and
stops sending heartbeats. Once its last heartbeat is older than
CQ_WORKER_TIMEOUT, any worker's sweeper requeues each of those tasks when the
task allows it (retries left, or `@task(at_least_once=True)`), and otherwise
marks it LOST, which runs the normal completion (parent, chain, errorbacks).
Heartbeats, not elapsed time, decide: a slow task on a live worker is never
touched.

Every change is conditional on the row still being RUNNING with the same
`retries` count: of several sweepers, one wins, and a worker that was only
presumed dead finds its late outcome discarded (an atomic task's writes roll
back) because its attempt is no longer the current one.
"""

import logging
from datetime import UTC, timedelta

from django.db import InterfaceError, OperationalError, transaction

from . import doorbell, registry, transitions
from .completion import Discarded, finish
from .conf import settings as cq_settings
from .exceptions import UnknownTaskError
from .models import Task, WorkerHeartbeat
from .serial import INLINE

logger = logging.getLogger(__name__)

# Most tasks recovered in one round.
BATCH = 100
# Seconds the heartbeat row of a dead worker is kept, for `cq_status`.
KEEP_DEAD_WORKERS = 3600


def sweep(worker, now):
    """Recover the orphaned RUNNING tasks; returns how many were requeued or lost.

    Each task is recovered on its own: one row the database refuses to change
    is logged and passed over, and never holds up the recovery of the others.
    An unreachable database stops the round (housekeeping backs off)."""
    recovered = 0
    for task, reason in orphans(worker, now):
        try:
            recovered += recover(task, reason)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("task not recovered id=%s name=%s", task.pk, task.func_name)
    return recovered


def orphans(worker, now):
    """(task, reason) pairs: RUNNING tasks of dead workers, and this worker's
    RUNNING tasks that it no longer runs (their outcome could not be recorded)."""
    return _of_dead_workers(worker, now) + _untracked(worker, now)


def _of_dead_workers(worker, now):
    if not worker.heartbeat_steady():
        # Right after a database outage every heartbeat is old, ours too:
        # judge nobody before live workers had a whole timeout to beat again.
        return []
    cutoff = now - timedelta(seconds=cq_settings.WORKER_TIMEOUT)
    alive = WorkerHeartbeat.objects.filter(seen__gte=cutoff).values("name")
    # A worker with no heartbeat row at all (never beat, or its row is gone)
    # is judged by the claim time: it had CQ_WORKER_TIMEOUT to beat.
    dead = list(
        Task.objects.filter(status=Task.STATUS_RUNNING, started__lt=cutoff)
        .exclude(worker="")
        # A task run inline (a direct call, CQ_SERIAL) belongs to its caller's
        # thread, which keeps no heartbeat: judged dead, it would run twice.
        .exclude(worker=INLINE)
        .exclude(worker=worker.name)
        .exclude(worker__in=alive)[:BATCH]
    )
    last_seen = dict(
        WorkerHeartbeat.objects.filter(name__in={task.worker for task in dead}).values_list(
            "name", "seen"
        )
    )
    return [(task, _died(task.worker, last_seen.get(task.worker), now)) for task in dead]


def _untracked(worker, now):
    mine = list(Task.objects.filter(status=Task.STATUS_RUNNING, worker=worker.name)[:BATCH])
    # Read what runs here only after the query: a task claimed meanwhile is
    # then in the set, and one that finished meanwhile is no longer RUNNING.
    running = worker.running_ids()
    reason = (
        f"WorkerLost: worker {worker.name} could not record this task's outcome "
        f"(database unreachable, or the write failed: see that worker's log; "
        f"noticed {_when(now)})"
    )
    return [(task, reason) for task in mine if str(task.pk) not in running]


def recover(task, reason):
    """Requeue `task` if it may run again, else mark it LOST; False if another
    sweeper or the task's own worker got there first."""
    if may_run_again(task):
        return requeue(task, reason)
    return mark_lost(task, reason)


def may_run_again(task):
    try:
        task_function = registry.get(task.func_name)
    except UnknownTaskError:
        return False
    return task_function.at_least_once or task.retries < task_function.retries


def requeue(task, reason):
    with transaction.atomic():
        requeued = transitions.requeue(task, f"{reason}; requeued")
        if requeued:
            doorbell.ring_on_commit([task.pk], task.queue)
    if requeued:
        logger.warning(
            "task requeued id=%s name=%s attempt=%s reason=%s",
            task.pk,
            task.func_name,
            task.retries + 1,
            reason,
        )
    return bool(requeued)


def mark_lost(task, reason):
    try:
        with transaction.atomic():
            finish(task, Task.STATUS_LOST, error=f"{reason}; marked lost")
    except Discarded:
        return False
    logger.warning("task lost id=%s name=%s reason=%s", task.pk, task.func_name, reason)
    return True


def forget_dead_workers(worker, now):
    """Delete heartbeat rows of workers dead for a long time."""
    cutoff = now - timedelta(seconds=KEEP_DEAD_WORKERS)
    WorkerHeartbeat.objects.filter(seen__lt=cutoff).delete()


def _died(name, last_seen, now):
    heard = f"last heartbeat {_when(last_seen)}" if last_seen else "no heartbeat"
    return f"WorkerLost: worker {name} died while running this task ({heard}, noticed {_when(now)})"


def _when(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
