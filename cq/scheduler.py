"""The cron scheduler: each due occurrence of a RepeatingTask launched exactly once.

Every `runworker cq-tasks` calls `tick()` in its housekeeping round; there is
no leader and no lock in Redis. An occurrence belongs to the worker whose
compare-and-set moves the row's `next_run` on from the value it read
(`UPDATE ... WHERE id = X AND next_run = <value read>`): however many workers
try at once, the database lets exactly one of them update the row. The Task
it launches is inserted in the same transaction, so an occurrence is consumed
together with its run or not at all: a database error rolls both back and the
next tick tries again.

Validation and the `next_run` computation live in cq.schedules.
"""

import logging

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from . import registry
from .enqueue import delay
from .exceptions import AlreadyQueued, CQError, InvalidSchedule, UnknownTaskError
from .models import RepeatingTask, Task
from .schedules import next_run

logger = logging.getLogger(__name__)

# Most repeating tasks one tick launches; the rest wait for the next tick.
BATCH = 100

_warned_unknown = set()


# ---- the tick


def due(now):
    """Enabled repeating tasks whose next run has come: one indexed query."""
    return list(
        RepeatingTask.objects.filter(enabled=True, next_run__lte=now).order_by("next_run", "pk")[
            :BATCH
        ]
    )


def tick(now=None):
    """Launch every occurrence due at `now` that no other worker launched;
    returns the Tasks launched here."""
    now = now or timezone.now()
    launched = []
    for repeating in due(now):
        try:
            task = dispatch(repeating, now)
        except (CQError, TypeError, ValueError) as exc:
            # Arguments stored without the checks (raw SQL, an old row) would
            # fail on every tick: park the row, and launch the others.
            _park(repeating, exc)
            continue
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception(
                "repeating task not launched id=%s name=%s", repeating.pk, repeating.func_name
            )
            continue
        if task is not None:
            launched.append(task)
    return launched


def dispatch(repeating, now):
    """Take the occurrence of `repeating` (as read by `due`) and launch its run.

    Returns the Task, or None when another worker took the occurrence, when it
    was skipped because the previous run is still active (coalescing), or when
    the row cannot be run here."""
    try:
        following = next_run(repeating.crontab, repeating.timezone, now=now)
    except InvalidSchedule as exc:
        _park(repeating, exc)
        return None
    if not _runnable_here(repeating):
        return None
    busy = repeating.coalesce and _previous_run_active(repeating)
    # Catching up after downtime: the next run is computed from now, not from
    # the missed occurrence, so a missed period runs once, then the schedule resumes.
    changes = {"next_run": following} if busy else {"next_run": following, "last_run": now}
    with transaction.atomic():
        taken = RepeatingTask.objects.filter(
            pk=repeating.pk, enabled=True, next_run=repeating.next_run
        ).update(**changes)
        if not taken:
            return None
        if busy:
            logger.info(
                "repeating task skipped, previous run still active id=%s name=%s next_run=%s",
                repeating.pk,
                repeating.func_name,
                following,
            )
            return None
        task = _launch(repeating)
    logger.info(
        "repeating task launched id=%s name=%s task=%s next_run=%s",
        repeating.pk,
        repeating.func_name,
        task.pk,
        following,
    )
    return task


def run_now(repeating, now=None):
    """Launch a run at once, outside the schedule (the admin's "run now").
    An explicit request: it does not wait for a previous run to finish."""
    with transaction.atomic():
        task = _launch(repeating)
        RepeatingTask.objects.filter(pk=repeating.pk).update(last_run=now or timezone.now())
    return task


def enable(queryset, now=None):
    """Enable the disabled repeating tasks of `queryset`, each scheduled from
    `now` on; returns how many were enabled."""
    enabled = 0
    for repeating in queryset.filter(enabled=False):
        try:
            when = next_run(repeating.crontab, repeating.timezone, now=now)
        except InvalidSchedule as exc:
            logger.warning("repeating task not enabled id=%s error=%s", repeating.pk, exc)
            continue
        enabled += RepeatingTask.objects.filter(pk=repeating.pk, enabled=False).update(
            enabled=True, next_run=when
        )
    return enabled


def disable(queryset):
    """Disable the enabled repeating tasks of `queryset`; returns how many."""
    return queryset.filter(enabled=True).update(enabled=False, next_run=None)


def _launch(repeating):
    try:
        return delay(
            repeating.func_name,
            repeating.args,
            repeating.kwargs,
            repeating_task=repeating,
            result_ttl=repeating.result_ttl,
        )
    except AlreadyQueued as exc:
        # A unique task (unique="raise") still active: this occurrence is its run.
        logger.info("repeating task already active id=%s task=%s", repeating.pk, exc.task.pk)
        return exc.task


def _previous_run_active(repeating):
    return Task.objects.filter(
        repeating_task_id=repeating.pk, status__in=Task.STATUS_ACTIVE
    ).exists()


def _runnable_here(repeating):
    # A name this process does not know (a rolling deploy, a removed task) is
    # left for a worker that knows it, not consumed: warn once per process.
    try:
        registry.get(repeating.func_name)
    except UnknownTaskError:
        key = (repeating.pk, repeating.func_name)
        if key not in _warned_unknown:
            _warned_unknown.add(key)
            logger.warning(
                "repeating task not launched, no @task is registered under its name id=%s name=%s",
                repeating.pk,
                repeating.func_name,
            )
        return False
    return True


def _park(repeating, exc):
    # A schedule or arguments stored without validation (raw SQL, an old row)
    # would fail on every tick: clear its next run, so it shows as not
    # scheduled in the admin.
    RepeatingTask.objects.filter(pk=repeating.pk, next_run=repeating.next_run).update(next_run=None)
    logger.error(
        "repeating task has an invalid schedule or arguments, not scheduled id=%s error=%s",
        repeating.pk,
        exc,
    )
