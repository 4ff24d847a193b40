"""Cron strings: validation, time zones, and the next occurrences of a schedule.

Occurrences are found in local wall-clock time, as cron finds them, then turned
into UTC instants. Around daylight-saving changes that gives what cron users
expect (Vixie cron and cronie behave the same way):

- a wall time the clocks skip (spring forward: 02:30 in Europe/Paris on the
  last Sunday of March) fires once, at the moment the clocks jump;
- a wall time the clocks repeat (fall back: 02:30 on the last Sunday of
  October) fires once, on its first pass; a schedule with `*` in its minute or
  hour field (`*/15 * * * *`, `0 * * * *`) keeps its real-time rhythm and
  fires on both passes.

Nothing here touches the database: these are plain functions, usable from a
data migration.
"""

import zoneinfo
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadDateError, croniter
from django.conf import settings

from .exceptions import InvalidSchedule

FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L for the last day, 15W for the weekday nearest the 15th"),
    ("month", "1-12 or jan-dec"),
    (
        "day-of-week",
        "0-7 or sun-sat; 0 and 7 are Sunday; 1#2 for the second Monday, L5 for the last Friday",
    ),
)

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(crontab):
    """The five fields of `crontab` as one string (an `@daily`-style alias
    expanded), or InvalidSchedule saying what is wrong with it."""
    if not isinstance(crontab, str):
        raise InvalidSchedule(f"a crontab is a string such as '0 3 * * *', got {crontab!r}")
    text = " ".join(crontab.split())
    text = ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) != 5:
        # croniter would read a sixth field as seconds: cq's scheduler ticks
        # once a minute, so a schedule in seconds would silently not be kept.
        extra = "; there is no seconds field" if len(fields) == 6 else ""
        raise InvalidSchedule(
            f"{crontab!r} has {len(fields)} field(s); a crontab has five: "
            f"minute hour day-of-month month day-of-week, e.g. '0 3 * * *'{extra}"
        )
    for position, (name, allowed) in enumerate(FIELDS):
        # Check each field alone, so that the error can name the bad one.
        probe = ["*"] * 5
        probe[position] = fields[position]
        if not croniter.is_valid(" ".join(probe)):
            raise InvalidSchedule(
                f"{crontab!r}: the {name} field {fields[position]!r} is not valid "
                f"(allowed: {allowed}, combined with , - / and *)"
            )
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(f"{crontab!r} never matches a date (such as 30 February)") from None
    return text


def get_zone(name=""):
    """The time zone called `name` (an IANA name), or the project's TIME_ZONE
    when `name` is empty."""
    name = name or settings.TIME_ZONE or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'"
        ) from None


def next_after(crontab, after, zone):
    """The first occurrence of `crontab` in `zone` strictly after the aware
    datetime `after`, as an aware UTC datetime."""
    fields = expand(crontab)
    minute, hour = fields.split()[:2]
    both_passes = minute.startswith("*") or hour.startswith("*")
    after = after.astimezone(UTC)
    candidates = []
    for wall in croniter(fields, _walk_start(after, zone)).all_next(datetime):
        instants = _instants(wall, zone, both_passes)
        candidates += [instant for instant in instants if instant > after]
        # Every later wall time fires after this one's first instant; only the
        # second pass of a repeated hour, met earlier in the walk, can be sooner.
        if instants[0] > after:
            return min(candidates)


def upcoming(crontab, after, zone, count):
    """The next `count` occurrences after `after`, as aware UTC datetimes."""
    runs = []
    for _ in range(count):
        after = next_after(crontab, after, zone)
        runs.append(after)
    return runs


def _walk_start(after, zone):
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold == 0:
        # In the first pass of a repeated hour, the second pass of the wall
        # times already gone by is still to come: walk from the hour's start.
        wall -= max(_shift(wall, zone), timedelta(0))
    # croniter yields times strictly after its start; step back so that a
    # match at the start itself is seen too (it may fire on a later pass).
    return wall - timedelta(minutes=1)


def _shift(wall, zone):
    """Positive when `wall` happens twice (clocks went back), negative when it
    never happens (clocks went forward), zero otherwise."""
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    return first - second


def _instants(wall, zone, both_passes):
    """The UTC instants at which an occurrence at local wall time `wall` fires,
    earliest first."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    shift = _shift(wall, zone)
    if not shift:
        return [first.astimezone(UTC)]
    if shift > timedelta(0):
        passes = (first, second) if both_passes else (first,)
        return [moment.astimezone(UTC) for moment in passes]
    # A skipped wall time: with fold=1 it reads as just before the jump, with
    # fold=0 as just after it. Fire at the jump itself.
    return [_jump(second.astimezone(UTC), first.astimezone(UTC), zone)]


def _jump(before, after, zone):
    """The instant in (before, after] at which `zone`'s clocks jump forward."""
    low, high = int(before.timestamp()), int(after.timestamp())
    target = after.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
