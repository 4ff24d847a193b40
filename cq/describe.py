"""Plain-English descriptions of common cron strings, for the admin.

Only patterns people write every day are described ("Every 15 minutes",
"At 09:00 on weekdays"); anything else is shown as the cron string itself,
which is better than a description that is subtly wrong.
"""

import re

from .cron import expand
from .exceptions import InvalidSchedule

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAY_NAMES = {name[:3].lower(): str(n) for n, name in enumerate(DAYS[:7])}
MONTH_NAMES = {name[:3].lower(): str(n) for n, name in enumerate(MONTHS) if name}
NUMBER = re.compile(r"^\d+$")
NUMBERS = re.compile(r"^\d+(,\d+)*$")
RANGE = re.compile(r"^(\d+)-(\d+)$")
STEP = re.compile(r"^\*/(\d+)$")


def describe(crontab):
    """A sentence for `crontab`, or the cron string itself when the pattern is
    not a common one (or not valid)."""
    try:
        fields = expand(crontab).lower().split()
    except InvalidSchedule:
        return crontab
    minute, hour, day, month, weekday = fields
    weekday = _numbers(weekday, DAY_NAMES)
    month = _numbers(month, MONTH_NAMES)
    when = _time_of_day(minute, hour)
    days = _days(day, month, weekday)
    if when is None or days is None:
        return " ".join(crontab.split())
    if when.startswith("at ") and not days:
        return f"Every day {when}"
    sentence = f"{when} {days}".strip()
    return sentence[0].upper() + sentence[1:]


def _time_of_day(minute, hour):
    if hour == "*":
        if minute in ("*", "*/1"):
            return "every minute"
        if STEP.match(minute):
            return f"every {STEP.match(minute)[1]} minutes"
        if minute == "0":
            return "every hour, on the hour"
        if NUMBERS.match(minute):
            return f"every hour at minute{'s' if ',' in minute else ''} {_join(minute.split(','))}"
        return None
    if not NUMBER.match(minute):
        return None
    if STEP.match(hour):
        return f"every {STEP.match(hour)[1]} hours at minute {minute}"
    if NUMBERS.match(hour):
        return "at " + _join([_clock(h, minute) for h in hour.split(",")])
    if RANGE.match(hour):
        first, last = RANGE.match(hour).groups()
        return f"every hour from {_clock(first, minute)} to {_clock(last, minute)}"
    return None


def _days(day, month, weekday):
    if day == "*" and month == "*":
        return _weekdays(weekday)
    if weekday != "*" or not NUMBERS.match(day):
        return None
    days = day.split(",")
    if month == "*":
        return f"on day{'s' if len(days) > 1 else ''} {_join(days)} of the month"
    if NUMBERS.match(month):
        months = [MONTHS[int(m)] for m in month.split(",")]
        return f"on {_join([f'{d} {m}' for m in months for d in days])}"
    return None


def _weekdays(weekday):
    if weekday == "*":
        return ""
    if weekday in ("1-5",):
        return "on weekdays"
    if weekday in ("0,6", "6,0", "6-7", "6,7"):
        return "on weekends"
    if NUMBERS.match(weekday):
        return "on " + _join([DAYS[int(d)] for d in weekday.split(",")])
    if RANGE.match(weekday):
        first, last = RANGE.match(weekday).groups()
        return f"from {DAYS[int(first)]} to {DAYS[int(last)]}"
    return None


def _numbers(field, names):
    """`mon-fri` -> `1-5`: names as numbers, so that one pattern matches both."""
    return re.sub(r"[a-z]{3}", lambda found: names.get(found[0], found[0]), field)


def _clock(hour, minute):
    return f"{int(hour):02d}:{int(minute):02d}"


def _join(items):
    items = list(items)
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"
