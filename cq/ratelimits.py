"""Rate limits: `@task(rate_limit="100/m")` holds over every worker and machine.

The limit is kept in Redis (the cq channel layer's first host, under its
prefix), as one schedule per task name: a theoretical arrival time (GCRA)
that each start moves on by one interval (a minute / 100 here). A worker
asks after a claim, for the rate-limited tasks it claimed, in one script
call: each task gets its own start time (a reservation kept in Redis under
the task's id). A task whose start time has come runs; the others go back
to QUEUED with `run_after` at their start time (cq.transitions.defer), so
the housekeeping that queues due rows (countdowns, retry backoff) releases
each when it may start. Nothing is dropped and nothing polls: a task is
claimed twice at most, once to get its time, once to run.

Time is Redis' clock (`TIME`), the same for all machines; the delay it
returns is added to the worker's own clock. The starts are spaced by one
interval; a task runs at the first housekeeping round after its time, so in
any span `t` at most `rate × (t + CQ_HOUSEKEEPING_INTERVAL) + 1` tasks of one
name start.

When Redis does not answer, a rate-limited task is not run (a limit that
cannot be checked could be broken) but deferred by OUTAGE_DELAY; other
tasks run as usual. Under a channel layer that is not channels-redis (the
in-memory layer of a demo), there is nothing all workers share: limits are
not applied, with a warning.
"""

import logging
import re
from datetime import timedelta

from channels.layers import get_channel_layer
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from . import registry, transitions
from .conf import settings as cq_settings
from .exceptions import InvalidTaskOption, UnknownTaskError
from .outages import OutageLog
from .transport import is_redis, sync_clients

logger = logging.getLogger(__name__)

_redis = OutageLog(logger, "Redis (rate limits)", "rate-limited tasks wait")
_warned_no_redis = False

# Seconds a rate-limited task waits when Redis cannot tell when it may start.
OUTAGE_DELAY = 5.0
# Milliseconds the schedule and the reservations outlive the last start they
# hold: a reservation is used when its task is claimed again, normally within
# a housekeeping round of its time.
KEEP_MS = 600_000

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day)\s*$")
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}

# KEYS: the schedule (theoretical arrival time, ms), the reservations (hash:
# task id -> start time, ms). ARGV: interval (ms), keep (ms), task ids.
# Returns, per task id, milliseconds until it may start (0: now).
ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local waits = {}
for i = 3, #ARGV do
    local slot = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
    if slot < 0 then
        slot = math.max(tat, now)
        tat = slot + interval
    end
    if slot <= now then
        redis.call('HDEL', KEYS[2], ARGV[i])
        waits[#waits + 1] = 0
    else
        redis.call('HSET', KEYS[2], ARGV[i], slot)
        waits[#waits + 1] = slot - now
    end
end
local keep = math.max(tat - now, 0) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], tat, 'PX', keep)
if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('PEXPIRE', KEYS[2], keep)
end
return waits
"""


def parse(rate):
    """Seconds between two starts for a rate such as "100/m", "10/s" or
    "1/5m"; None for no limit. Raises InvalidTaskOption."""
    if rate is None:
        return None
    match = _RATE.match(rate) if isinstance(rate, str) else None
    if match is None:
        raise InvalidTaskOption(
            f'rate_limit must look like "10/s", "100/m", "1000/h" or "1/5m", got {rate!r}'
        )
    count, span, unit = match.groups()
    seconds = float(span or 1) * _UNIT[unit]
    if float(count) <= 0 or seconds <= 0:
        raise InvalidTaskOption(f"rate_limit must allow some starts, got {rate!r}")
    return seconds / float(count)


def admit(tasks):
    """Of `tasks`, claimed (RUNNING) by this worker, those that may start now;
    the others are deferred to their start time (back to QUEUED)."""
    if not tasks:
        return tasks
    limited = {}
    for task in tasks:
        if _interval(task.func_name) is not None:
            limited.setdefault(task.func_name, []).append(task)
    if not limited:
        return tasks
    deferred = set()
    for name, claimed in limited.items():
        interval = registry.get(name).rate_interval
        for task, wait in zip(claimed, _waits(name, interval, claimed), strict=True):
            if wait > 0 and _defer(task, wait):
                deferred.add(task.pk)
    return [task for task in tasks if task.pk not in deferred]


def _interval(name):
    try:
        return registry.get(name).rate_interval
    except UnknownTaskError:
        return None


def _waits(name, interval, tasks):
    """Seconds until each task may start, by Redis' schedule for `name`."""
    global _warned_no_redis
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    if not is_redis(layer):
        if not _warned_no_redis:
            _warned_no_redis = True
            logger.warning("rate limits not applied: the channel layer is not channels-redis")
        return [0.0] * len(tasks)
    interval_ms = max(1, round(interval * 1000))
    key = f"{layer.prefix}cq.rate.{name}"
    try:
        script = _script(sync_clients(layer)[0])
        waits = script(
            keys=[key, key + ".held"],
            args=[interval_ms, KEEP_MS, *(str(task.pk) for task in tasks)],
        )
    except RedisError as exc:
        _redis.failed(exc)
        return [OUTAGE_DELAY] * len(tasks)
    _redis.succeeded()
    return [wait / 1000 for wait in waits]


def _defer(task, wait):
    """Back to QUEUED until its start time; False (it runs now) if the
    database failed: one start too many beats a task stuck RUNNING."""
    run_after = timezone.now() + timedelta(seconds=wait)
    try:
        moved = transitions.defer(task, run_after)
    except DatabaseError as exc:
        logger.warning("rate-limited task not deferred, runs now id=%s error=%s", task.pk, exc)
        return False
    # A row that moved on meanwhile (revoked) is not ours to run either.
    logger.debug("task deferred by its rate limit id=%s wait=%.3f moved=%s", task.pk, wait, moved)
    return True


def _script(client):
    script = getattr(client, "_cq_admit_script", None)
    if script is None:
        # Registered once per client: later calls run it by its hash (EVALSHA).
        script = client._cq_admit_script = client.register_script(ADMIT_SCRIPT)
    return script
