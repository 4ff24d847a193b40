"""The cron scheduler: each due occurrence of a RepeatingTask launched exactly once.

Every `runworker cq-tasks` calls `tick()` in its housekeeping round; there is
no leader and no lock in Redis. An occurrence belongs to the worker whose
compare-and-set moves the row's `next_run` on from the value it read
(`UPDATE ... WHERE id = X AND next_run = <value read>`): however many workers
try at once, the database lets exactly one of them update the row. The Task
it launches is inserted in the same transaction, so an occurrence is consumed
together with its run or not at all: a database error rolls both back and the
next tick tries again.

Validation and the `next_run` computation are plain functions, not model
methods, so that `schedule_task` also works on the historical model a data
migration gets from `apps.get_model()`.
"""

import logging

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from . import registry
from .cron import expand, get_zone, next_after
from .exceptions import CQError, InvalidSchedule, UnknownTaskError
from .models import RepeatingTask, Task, check_json, delay

logger = logging.getLogger(__name__)

# Most repeating tasks one tick launches; the rest wait for the next tick.
BATCH = 100
# Fields `schedule_task()` accepts besides the crontab, the task and its arguments.
OPTIONS = {"timezone", "coalesce", "enabled", "result_ttl"}

_warned_unknown = set()


# ---- validation and next_run, for schedule_task() and RepeatingTask


def check_func_name(fn_or_name):
    """The registered name of `fn_or_name`; UnknownTaskError for anything that
    is not a @task (a repeating task never runs an arbitrary dotted path)."""
    return registry.resolve(fn_or_name).name


def check_arguments(args, kwargs):
    """`args` as a list and `kwargs` as a dict, both storable as JSON."""
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, e.g. [7], got {args!r}")
    if not isinstance(kwargs, dict):
        raise TypeError(f'kwargs must be a dict, e.g. {{"days": 7}}, got {kwargs!r}')
    check_json(list(args), "arguments")
    check_json(kwargs, "keyword arguments")
    return list(args), dict(kwargs)


def validate(func_name, crontab, timezone_name, args, kwargs):
    """Field name -> error message for each invalid value; empty when all are
    valid. Empty names and crontabs are left to the fields' own blank check."""
    checks = {
        "func_name": lambda: func_name and check_func_name(func_name),
        "crontab": lambda: crontab and expand(crontab),
        "timezone": lambda: get_zone(timezone_name),
        "args": lambda: check_arguments(args, {}),
        "kwargs": lambda: check_arguments([], kwargs),
    }
    errors = {}
    for field, check in checks.items():
        try:
            check()
        except (CQError, TypeError, ValueError) as exc:
            errors[field] = str(exc)
    return errors


def next_run(crontab, timezone_name="", enabled=True, now=None):
    """When a schedule next fires after `now`: None for a disabled one."""
    if not enabled:
        return None
    return next_after(crontab, now or timezone.now(), get_zone(timezone_name))


def prepare(crontab, fn_or_name, args=(), kwargs=None, **options):
    """The checked field values of a new RepeatingTask, `next_run` included."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(
            f"unknown repeating task option(s) {', '.join(sorted(unknown))}; "
            f"the options are {', '.join(sorted(OPTIONS))}"
        )
    ttl = options.get("result_ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise TypeError(f"result_ttl must be seconds (an integer >= 0) or None, got {ttl!r}")
    func_name = check_func_name(fn_or_name)
    expand(crontab)
    crontab = " ".join(crontab.split())
    args, kwargs = check_arguments(args, {} if kwargs is None else kwargs)
    when = next_run(crontab, options.get("timezone", ""), options.get("enabled", True))
    return {
        **options,
        "func_name": func_name,
        "crontab": crontab,
        "args": args,
        "kwargs": kwargs,
        "next_run": when,
    }


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
    return delay(
        repeating.func_name,
        repeating.args,
        repeating.kwargs,
        repeating_task=repeating,
        result_ttl=repeating.result_ttl,
    )


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
