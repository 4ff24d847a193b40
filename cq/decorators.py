"""The `@task` decorator and the function object it returns."""

import functools
import inspect
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from asgiref.sync import sync_to_async

from . import coroutines, options, ratelimits, registry, uniqueness
from .exceptions import InvalidTaskOption
from .queues import DEFAULT_QUEUE, check_priority, check_queue

if TYPE_CHECKING:
    from .models import Task

logger = logging.getLogger(__name__)

# A task function's parameters after `cqt`, and what it returns: `@task` keeps
# them, so that type checkers check `fn(...)` and `fn.delay(...)` against the
# function and know that `.delay()` returns a Task.
P = ParamSpec("P")
R = TypeVar("R")


class TaskFunction(Generic[P, R]):
    """A registered task: call it to run inline, `.delay()` it to queue it."""

    def __init__(
        self,
        fn: Callable[Concatenate[Any, P], R],
        name=None,
        atomic=None,
        retries=0,
        retry_exceptions=None,
        retry_delay=0,
        result_ttl=None,
        at_least_once=False,
        queue=DEFAULT_QUEUE,
        priority=0,
        unique=None,
        unique_key=None,
        rate_limit=None,
        retry_jitter=True,
        time_limit=None,
    ):
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        # None: atomic for a plain function, not for an `async def` one (cq.coroutines).
        self.atomic = coroutines.check_atomic(fn, self.name, atomic)
        self.is_coroutine = coroutines.is_coroutine_function(fn)
        # Numbers are checked in cq.options, the one rule for every entry point.
        self.retries = options.check_count("retries", retries)
        self.retry_exceptions = options.check_retry_exceptions(retry_exceptions)
        self.retry_delay = options.check_seconds("retry_delay", retry_delay)
        self.result_ttl = options.check_result_ttl(result_ttl)
        # When its worker dies mid-run, the sweeper requeues the task (even
        # with no retries left) instead of marking it LOST: for tasks that are
        # safe to run twice. See docs/guarantees.md.
        self.at_least_once = bool(at_least_once)
        # Where its runs go unless `delay_args(queue=..., priority=...)` says otherwise.
        self.queue = check_queue(queue)
        self.priority = check_priority(priority)
        # At most one active task per key (cq.uniqueness): None, "return" or "raise".
        self.unique = uniqueness.check_mode(unique, unique_key)
        self.unique_key = unique_key
        # Most starts per period over all workers (cq.ratelimits), e.g. "100/m",
        # and so the seconds between two starts; None: no limit.
        self.rate_limit = rate_limit
        self.rate_interval = ratelimits.parse(rate_limit)
        self.retry_jitter = bool(retry_jitter)
        # Seconds before a run is stopped (cq.time_limits); None: CQ_DEFAULT_TIME_LIMIT, 0: none.
        self.time_limit = options.check_time_limit(time_limit)
        functools.update_wrapper(self, fn)

    def __repr__(self):
        return f"<task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task inline, in this process, and return its result.

        Typed as the function's return type; as from a worker, a value JSON does
        not hold as such comes back as stored (a Decimal as a string)."""
        from . import serial

        return serial.call(self, args, kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> "Task":
        """Store the call as a QUEUED task and ring a worker; returns the Task."""
        return self.delay_args(args, kwargs)

    def delay_args(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        submit: bool = True,
        **fields: Any,
    ) -> "Task":
        """`.delay()` with options: `queue`, `priority` (-100 to 100, higher
        first), `time_limit` (seconds), `submit=False` keeps it PENDING,
        `run_after`, `countdown`, `result_ttl`, `parent`, ..."""
        from .enqueue import delay

        return delay(self, args, kwargs, submit=submit, **fields)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> "Task":
        """`.delay()` from async code (an async view, an `async def` task)."""
        return await sync_to_async(self.delay_args)(args, kwargs)

    def delay_many(self, calls: Iterable[Any], **fields: Any) -> "list[Task]":
        """Queue many calls with one INSERT; `calls` holds `(args, kwargs)` pairs
        or plain argument tuples. Returns the Tasks."""
        from .enqueue import delay_many

        return delay_many(self, calls, **fields)

    def should_retry(self, exc, attempts_done):
        """Whether a run that raised `exc` gets another attempt."""
        if attempts_done >= self.retries:
            return False
        if not self.retry_exceptions:
            return True
        try:
            return any(_matches(rule, exc) for rule in self.retry_exceptions)
        except Exception:
            # A broken predicate must not leave the task RUNNING forever: no retry.
            logger.exception("retry predicate failed task=%s", self.name)
            return False

    def retry_countdown(self, attempt):
        """Seconds before retry number `attempt` (1-based): exponential backoff,
        with jitter unless `retry_jitter=False`: somewhere between half and all
        of it ("equal jitter"), so that the tasks a failing dependency failed
        at one moment do not all retry at the same moment, yet none retries
        sooner than half the planned backoff."""
        # Capped: doubled often enough, any delay would overflow `now + backoff`
        # in the worker (and 2 ** 1100 a float).
        doubled = self.retry_delay * 2 ** min(attempt - 1, 64)
        backoff = min(doubled, options.MAX_SECONDS)
        if self.retry_jitter and backoff:
            return backoff / 2 + random.uniform(0, backoff / 2)
        return backoff


class _Decorator(Protocol):
    """What `@task("name", ...)` returns: a decorator that keeps the types."""

    # An `async def` task called directly runs to its end and returns its result,
    # not a coroutine: its TaskFunction is typed with what the coroutine returns.
    @overload
    def __call__(
        self, fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> TaskFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> TaskFunction[P, R]: ...


# `options` stay `Any` here: TaskFunction's own arguments check them at runtime,
# and new options need no second list to keep in step.
@overload
def task(
    name_or_fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
) -> TaskFunction[P, R]: ...
@overload
def task(name_or_fn: Callable[Concatenate[Any, P], R], /) -> TaskFunction[P, R]: ...
@overload
def task(name_or_fn: str | None = None, /, **options: Any) -> _Decorator: ...
def task(name_or_fn=None, **options):
    """Register a function as a task.

    `@task`, `@task("name")`, `@task(atomic=False, retries=3, ...)` and
    `@task("name", retries=3)` all work. The function's first parameter
    receives the running task (`cqt`).
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise InvalidTaskOption(
            f"@task got unknown option(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(sorted(_OPTIONS))}"
        )
    if callable(name_or_fn):
        return _register(name_or_fn, options)
    if name_or_fn is not None and not isinstance(name_or_fn, str):
        raise InvalidTaskOption(f"@task takes a name string, not {name_or_fn!r}")
    if name_or_fn is not None:
        if "name" in options:
            raise InvalidTaskOption("give @task its name once, not also as name=")
        options["name"] = name_or_fn
    return lambda fn: _register(fn, options)


_OPTIONS = frozenset(inspect.signature(TaskFunction).parameters) - {"fn"}


# A task as `chain()`, `errorback()`, `delay()` and `schedule_task()` take it:
# the `@task` function or its registered name.
TaskRef = TaskFunction[..., Any] | str


def _register(fn, options):
    if not callable(fn):
        raise InvalidTaskOption(f"@task decorates a function, not {fn!r}")
    task_function = TaskFunction(fn, **options)
    registry.register(task_function)
    return task_function


def _matches(rule, exc):
    if isinstance(rule, type):
        return isinstance(exc, rule)
    return bool(rule(exc))
