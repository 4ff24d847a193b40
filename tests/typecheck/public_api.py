"""What a type checker must see in cq's public API; `make typecheck` runs mypy on it.

Never imported, only checked: each `assert_type` fails if a type drifts (to Any,
say), and each `# type: ignore[code]` marks a call that must stay an error;
with `warn_unused_ignores`, mypy fails if that call ever type-checks.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any, assert_type

import cq
from cq import RepeatingTask, Task, WaitTimeout, schedule_task, task
from cq.decorators import TaskFunction
from cq.decorators import task as django_cq_task
from cq.models import RepeatingTask as DjangoCQRepeatingTask
from cq.models import Task as DjangoCQTask
from cq.models import schedule_task as django_cq_schedule_task
from cq.running import RunningTask


@task
def add(cqt: Any, a: int, b: int) -> int:
    return a + b


@task("typing.greet", retries=2, queue="emails")
def greet(cqt: Any, name: str, *, shout: bool = False) -> str:
    return name.upper() if shout else name


@django_cq_task
def total(cqt, amounts: list[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


@task
def parent(cqt: RunningTask, n: int) -> None:
    assert_type(cqt.subtask(add, (n, n)), Task)
    assert_type(cqt.log("spawned", publish=False), None)
    assert_type(cqt.pk, Any)  # the row's fields read through
    cqt.log(42)  # type: ignore[arg-type]
    assert_type(cqt.chain(add, (1,)), Task)
    assert_type(cqt.errorback(on_failure), None)
    assert_type(cqt.progress(3, 10, "page 3"), None)
    cqt.progress("3")  # type: ignore[arg-type]
    assert_type(cqt.cancelled, bool)
    assert_type(cqt.check_cancelled(), None)


@task
async def fetch(cqt: RunningTask, url: str) -> int:
    assert_type(await cqt.asubtask(add, (1, 2)), Task)
    assert_type(await cqt.achain(add, (3,)), Task)
    assert_type(await add.adelay(1, 2), Task)
    return len(url)


# An async def task called directly returns its result, not a coroutine.
assert_type(fetch("https://example.com"), int)
assert_type(fetch.delay("https://example.com"), Task)
fetch.delay(42)  # type: ignore[arg-type]


# The decorator keeps the call signature after `cqt`, and the return type.
add_function: TaskFunction[[int, int], int] = add
add_call: Callable[[int, int], int] = add
greet_function: TaskFunction[[str], str] = greet  # shout= has a default
not_add: Callable[[str], int] = add  # type: ignore[assignment]
assert_type(add(2, 3), int)
assert_type(greet("ada", shout=True), str)
assert_type(total([Decimal("1.5")]), Decimal)

# .delay() is checked against the function and returns a Task.
assert_type(add.delay(2, 3), Task)
assert_type(greet.delay("ada", shout=True), Task)
add.delay("2", 3)  # type: ignore[arg-type]
add.delay(2)  # type: ignore[call-arg]
greet.delay("ada", loud=True)  # type: ignore[call-arg]
add(2, 3, 4)  # type: ignore[call-arg]
assert_type(add.delay_args((2, 3), priority=10), Task)
assert_type(add.delay_many([(1, 2), (3, 4)]), list[Task])
assert_type(cq.delay(add, (1, 2)), Task)
assert_type(cq.delay("typing.greet", ("ada",)), Task)
cq.delay(print, ())  # type: ignore[arg-type]

# The Task methods a user calls.
t = add.delay(1, 2)
assert_type(t.wait(timeout=10), Task)
assert_type(t.is_done, bool)
assert_type(t.is_error, bool)
assert_type(t.chain(add, (3,)), Task)
assert_type(t.errorback("typing.greet"), None)


def on_failure(failed: Task, error: str) -> None: ...


assert_type(t.errorback(on_failure), None)
assert_type(t.submit(), Task)
assert_type(t.revoke(), Task)
t.wait(timeout="10")  # type: ignore[arg-type]

# Repeating tasks, in code and through django-cq's import paths.
assert_type(schedule_task(RepeatingTask, "0 3 * * *", add, (1, 2)), RepeatingTask)
assert_type(RepeatingTask.schedule("*/5 * * * *", "typing.greet", ("ada",)), RepeatingTask)
assert_type(DjangoCQTask, type[Task])
assert_type(DjangoCQRepeatingTask, type[RepeatingTask])
assert_type(
    django_cq_schedule_task(DjangoCQRepeatingTask, "0 3 * * *", "typing.greet"), RepeatingTask
)
schedule_task(RepeatingTask, 5, add)  # type: ignore[arg-type]

# The exceptions: a WaitTimeout is also a TimeoutError.
try:
    t.wait(1, raise_on_timeout=True)
except WaitTimeout as exc:
    assert_type(exc, WaitTimeout)
    timeout_error: TimeoutError = exc
    cq_error: cq.CQError = exc
