"""cq's own maintenance tasks, registered like any @task.

Schedule them with `schedule_task`, for example in a data migration
(docs/scheduling.md has the whole recipe):

    schedule_task(RepeatingTask, "17 3 * * *", "cq.tasks.clean_up")
    schedule_task(RepeatingTask, "*/10 * * * *", "cq.tasks.feed")

Logs need no task of their own: a tree's log lines are stored on its top-level
row (and deleted with it), and lines left in the cache by a tree that never
finished expire with the cache entries (`cq.logs.BUFFER_TIMEOUT`).
"""

import logging

from django.db.models import Exists, OuterRef
from django.utils import timezone

from . import feeder, housekeeping
from .decorators import task
from .models import Task

logger = logging.getLogger(__name__)

# Top-level tasks deleted per statement: each delete is a short transaction.
BATCH = 500


@task(atomic=False)
def clean_up(cqt, batch=BATCH):
    """Delete finished task trees whose `result_expiry` has passed; returns how
    many rows went. A tree goes whole (its subtasks and chained tasks with its
    top-level task) and only once nothing in it is still active."""
    now = timezone.now()
    deleted = 0
    while True:
        ids = list(expired(now).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        deleted += Task.objects.filter(pk__in=ids).delete()[0]
    logger.info("expired tasks deleted count=%s", deleted)
    return deleted


@task(atomic=False)
def feed(cqt, older_than=None):
    """Queue retries that are due and ring for QUEUED tasks older than
    `older_than` seconds (default CQ_REQUEUE_AFTER) that have no doorbell in
    the channel, as every worker's housekeeping round does (cq.feeder).
    Returns how many tasks were rung for."""
    now = timezone.now()
    housekeeping.queue_due(None, now)
    return len(feeder.feed(None, now, older_than))


# The name `feed` had before "sweeper" came to mean dead-worker recovery only
# (cq.recovery): kept, so that schedules stored with it go on running.
sweep = task("cq.tasks.sweep", atomic=False)(feed.fn)


def expired(now):
    """Top-level tasks that are done, expired at `now`, with no active descendant."""
    active_descendant = Task.objects.filter(root_id=OuterRef("pk"), status__in=Task.STATUS_ACTIVE)
    return (
        Task.objects.filter(root__isnull=True, status__in=Task.STATUS_DONE, result_expiry__lte=now)
        .filter(~Exists(active_descendant))
        .order_by()
    )
