"""What every `runworker cq-tasks` does besides running tasks, once a second:
heartbeat, queue due tasks (countdowns, retry backoff), launch due repeating
tasks (unless `--no-scheduler`), re-ring stale QUEUED rows.

Every step is safe with any number of workers doing it at once: each change is
a conditional update, and a doorbell rung twice runs its task once.
"""

import logging
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from . import doorbell, scheduler
from .conf import settings as cq_settings
from .models import Task, WorkerHeartbeat

logger = logging.getLogger(__name__)

# Most rows one step touches, so that a huge backlog is fed in slices and
# Redis never holds more doorbells than the channel's capacity.
BATCH = 500


def run_once(worker, now=None):
    """One housekeeping round for `worker` (a cq.worker.Worker); never raises."""
    now = now or timezone.now()
    steps = [beat, queue_due]
    if worker.scheduler:
        steps.append(launch_repeating)
    if worker.idle:
        # Only an idle worker looks for lost doorbells: while messages flow, an
        # old QUEUED row is just a backlog, and ringing for it would flood Redis.
        steps.append(ring_stale)
    for step in steps:
        try:
            step(worker, now)
        except Exception:
            logger.exception("housekeeping step failed step=%s", step.__name__)
            close_old_connections()


def beat(worker, now):
    WorkerHeartbeat.objects.update_or_create(
        name=worker.name, defaults={"seen": now, "concurrency": worker.concurrency}
    )


def queue_due(worker, now):
    """Queue the rows whose `run_after` has come, and ring for them."""
    ids = list(Task.objects.due(now).values_list("pk", flat=True)[:BATCH])
    if ids:
        Task.objects.due(now).filter(pk__in=ids).update(
            status=Task.STATUS_QUEUED, run_after=None
        )
        doorbell.ring(ids)


def launch_repeating(worker, now):
    """Launch the repeating tasks whose next run has come (see cq.scheduler).
    Running every round also makes this the cron clock: a due occurrence
    starts within one housekeeping interval."""
    scheduler.tick(now)


def ring_stale(worker, now, older_than=None):
    """Ring again for QUEUED rows that waited too long: their doorbell was lost
    (Redis restarted, message expired, `ChannelFull`, a send that failed)."""
    if older_than is None:
        older_than = cq_settings.REQUEUE_AFTER
    cutoff = now - timedelta(seconds=older_than)
    ids = list(
        Task.objects.filter(status=Task.STATUS_QUEUED, run_after__isnull=True,
                            submitted__lte=cutoff)
        .order_by("submitted").values_list("pk", flat=True)[:BATCH]
    )
    if ids:
        logger.info("ringing again for stale queued tasks count=%s", len(ids))
        doorbell.ring(ids)
    return ids


def forget(worker):
    """A worker that stops cleanly removes its heartbeat."""
    WorkerHeartbeat.objects.filter(name=worker.name).delete()
