"""The `@task` decorator and the function object it returns."""

import functools
import inspect
import logging
import numbers

from . import registry
from .exceptions import InvalidTaskOption
from .queues import DEFAULT_QUEUE, check_priority, check_queue
from .time_limits import check_time_limit

logger = logging.getLogger(__name__)


class TaskFunction:
    """A registered task: call it to run inline, `.delay()` it to queue it."""

    def __init__(
        self,
        fn,
        name=None,
        atomic=True,
        retries=0,
        retry_exceptions=None,
        retry_delay=0,
        result_ttl=None,
        at_least_once=False,
        queue=DEFAULT_QUEUE,
        priority=0,
        time_limit=None,
    ):
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.atomic = bool(atomic)
        self.retries = _check_count("retries", retries)
        self.retry_exceptions = _check_retry_exceptions(retry_exceptions)
        self.retry_delay = _check_seconds("retry_delay", retry_delay)
        self.result_ttl = None if result_ttl is None else _check_seconds("result_ttl", result_ttl)
        # When its worker dies mid-run, the sweeper requeues the task (even
        # with no retries left) instead of marking it LOST: for tasks that are
        # safe to run twice. See docs/guarantees.md.
        self.at_least_once = bool(at_least_once)
        # Where its runs go unless `delay_args(queue=..., priority=...)` says otherwise.
        self.queue = check_queue(queue)
        self.priority = check_priority(priority)
        # Seconds before a run is stopped (cq.time_limits); None: CQ_DEFAULT_TIME_LIMIT, 0: none.
        self.time_limit = check_time_limit(time_limit)
        functools.update_wrapper(self, fn)

    def __repr__(self):
        return f"<task {self.name}>"

    def __call__(self, *args, **kwargs):
        """Run the task inline, in this process, and return its result."""
        from . import serial

        return serial.call(self, args, kwargs)

    def delay(self, *args, **kwargs):
        """Store the call as a QUEUED task and ring a worker; returns the Task."""
        return self.delay_args(args, kwargs)

    def delay_args(self, args=(), kwargs=None, submit=True, **fields):
        """`.delay()` with options: `queue`, `priority` (-100 to 100, higher
        first), `time_limit` (seconds), `submit=False` keeps it PENDING,
        `run_after`, `countdown`, `result_ttl`, `parent`, ..."""
        from .enqueue import delay

        return delay(self, args, kwargs, submit=submit, **fields)

    def delay_many(self, calls, **fields):
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
        """Seconds before retry number `attempt` (1-based): exponential backoff."""
        return self.retry_delay * 2 ** (attempt - 1)


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


def _check_count(option, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidTaskOption(f"{option} must be an integer >= 0, got {value!r}")
    return value


def _check_seconds(option, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise InvalidTaskOption(f"{option} must be a number of seconds >= 0, got {value!r}")
    return value


def _check_retry_exceptions(rules):
    if rules is None:
        return ()
    if isinstance(rules, type) or callable(rules) and not isinstance(rules, (list, tuple)):
        rules = [rules]
    for rule in rules:
        is_exception = isinstance(rule, type) and issubclass(rule, BaseException)
        if not is_exception and (isinstance(rule, type) or not callable(rule)):
            raise InvalidTaskOption(
                "retry_exceptions takes exception classes or callables "
                f"(exception -> bool), got {rule!r}"
            )
    return tuple(rules)
