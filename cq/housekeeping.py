"""What every `runworker cq-tasks` does besides running tasks, once a round:
ring the rows whose doorbell is gone, queue due tasks (countdowns, retry
backoff), launch due repeating tasks (unless `--no-scheduler`), recover the
tasks of dead workers. The heartbeat is sent from a thread of its own (`beat`),
so a slow round never makes a live worker look dead.

Every step is safe with any number of workers doing it at once: each change is
a conditional update, and a doorbell rung twice runs its task once.
"""

import logging

from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from . import doorbell, feeder, recovery, scheduler, transitions
from .models import Task, WorkerHeartbeat
from .outages import OutageLog

logger = logging.getLogger(__name__)

_database = OutageLog(logger, "database", "housekeeping paused")

# Most rows one step touches, so that a huge backlog is handled in slices.
BATCH = 500


def run_once(worker, now=None):
    """One housekeeping round for `worker` (a cq.worker.Worker); never raises."""
    now = now or timezone.now()
    # Feeding comes first: the doorbells the later steps ring have reached the
    # channel by the time the next round looks into it, and are not rung twice.
    steps = [feeder.feed, queue_due]
    if worker.scheduler:
        steps.append(launch_repeating)
    steps += [recovery.sweep, recovery.forget_dead_workers]
    for step in steps:
        try:
            step(worker, now)
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable: the other steps would fail alike.
            _database.failed(exc)
            close_old_connections()
            return
        except Exception:
            logger.exception("housekeeping step failed step=%s", step.__name__)
            close_old_connections()
    _database.succeeded()


def beat(worker, now):
    """Record that `worker` is alive, and whether Redis answers it."""
    WorkerHeartbeat.objects.update_or_create(
        name=worker.name,
        defaults={
            "seen": now,
            "concurrency": worker.concurrency,
            "channel_down_since": worker.channel_down_since,
        },
    )


def queue_due(worker, now):
    """Queue the rows whose `run_after` has come, and ring for them."""
    doorbell.ring_rows(transitions.release_due(Task, now, BATCH))


def launch_repeating(worker, now):
    """Launch the repeating tasks whose next run has come (see cq.scheduler).
    Running every round also makes this the cron clock: a due occurrence
    starts within one housekeeping interval."""
    scheduler.tick(now)


def forget(worker):
    """A worker that stops cleanly removes its heartbeat."""
    WorkerHeartbeat.objects.filter(name=worker.name).delete()
