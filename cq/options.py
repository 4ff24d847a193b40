"""Task options: one check per option, shared by every way a task is made.

`@task`, `delay_args()` (so `.delay()`, `subtask()`, `chain()` and
`delay_many()` too), the Django task backend's OPTIONS and repeating tasks
check their values here, before anything is written: a bad one raises
InvalidTaskOption at the call, naming the value. Letting the database refuse
it instead would be worse than late: PostgreSQL aborts the caller's whole
transaction on a refused row (a check constraint, an integer out of range),
so every later query in that transaction would fail too.

Options that parse a notation of their own check it in their feature's module
(`queue` and `priority` in cq.queues, `rate_limit` in cq.ratelimits, `unique`
and `unique_key` in cq.uniqueness, `atomic` in cq.coroutines); the numbers,
which all share one rule, are checked here.
"""

import math
import numbers
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .exceptions import InvalidTaskOption
from .queues import check_priority, check_queue

# The longest span an option may give, in seconds: 2**31 - 1, 68 years. It is
# what result_ttl's column holds (a PositiveIntegerField: 4 bytes on
# PostgreSQL), and it keeps `now + countdown` far inside datetime's range,
# which ends in the year 9999 (countdown=1e12 raised OverflowError there).
MAX_SECONDS = 2**31 - 1


def check_count(option: str, value: object) -> int:
    """`value` if it is an integer >= 0 (retries)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTaskOption(f"{option} must be an integer >= 0, got {value!r}")
    return value


def check_seconds(option: str, value: object) -> float:
    """`value` if it is a finite number of seconds from 0 to MAX_SECONDS: NaN,
    which compares false with everything, and infinity are refused by name."""
    seconds = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float (10**400)
            seconds = math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        raise InvalidTaskOption(
            f"{option} must be a number of seconds >= 0, finite and at most {MAX_SECONDS} "
            f"(68 years), got {value!r}"
        )
    return value  # type: ignore[return-value]  # a Real, kept as given (an int stays one)


def check_result_ttl(value: object) -> int | None:
    """None (CQ_RESULT_TTL applies) or whole seconds from 0 to MAX_SECONDS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise InvalidTaskOption(
            f"result_ttl must be a whole number of seconds >= 0 (at most {MAX_SECONDS}) "
            f"or None, got {value!r}"
        )
    return value


def check_time_limit(value: object) -> float | None:
    """None (the task's limit, else CQ_DEFAULT_TIME_LIMIT), 0 (no limit), or
    seconds: a NaN limit would never be reached, so the task would run unlimited."""
    if value is None:
        return None
    return float(check_seconds("time_limit", value))


def check_call(task_function: Any, fields: dict[str, Any]) -> None:
    """Check the options of one call (`delay_args(**fields)`) in place, the
    task's own filling in what the call leaves out; `countdown` becomes
    `run_after`. Everything is checked before the row is built."""
    fields["run_after"] = run_after(fields.pop("run_after", None), fields.pop("countdown", None))
    ttl = check_result_ttl(fields.get("result_ttl"))
    fields["result_ttl"] = task_function.result_ttl if ttl is None else ttl
    fields["queue"] = check_queue(fields.get("queue", task_function.queue))
    fields["priority"] = check_priority(fields.get("priority", task_function.priority))
    fields["time_limit"] = check_time_limit(fields.get("time_limit"))


def run_after(when: object, countdown: object) -> datetime | None:
    """When a call may run: `run_after` (an aware datetime), `countdown` seconds
    from now, or None (at once)."""
    if countdown is not None:
        if when is not None:
            raise InvalidTaskOption("give run_after or countdown, not both")
        return timezone.now() + timedelta(seconds=check_seconds("countdown", countdown))
    if when is None:
        return None
    if not isinstance(when, datetime) or timezone.is_naive(when):
        raise InvalidTaskOption(f"run_after must be an aware datetime, got {when!r}")
    return when


def check_retry_exceptions(rules: object) -> tuple:
    """`retry_exceptions` as a tuple of exception classes and predicates."""
    if rules is None:
        return ()
    if isinstance(rules, type) or callable(rules) and not isinstance(rules, (list, tuple)):
        rules = [rules]
    if not isinstance(rules, (list, tuple)):
        raise InvalidTaskOption(
            f"retry_exceptions takes exception classes or callables, got {rules!r}"
        )
    for rule in rules:
        is_exception = isinstance(rule, type) and issubclass(rule, BaseException)
        if not is_exception and (isinstance(rule, type) or not callable(rule)):
            raise InvalidTaskOption(
                "retry_exceptions takes exception classes or callables "
                f"(exception -> bool), got {rule!r}"
            )
    return tuple(rules)
