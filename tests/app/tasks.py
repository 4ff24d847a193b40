"""Tasks the test suite runs, in real workers and inline."""

import logging
import time

from django.core.cache import cache
from django.db import transaction

from cq import task
from tests.app.models import Note


@task
def add(cqt, a, b):
    return a + b


@task("tests.named")
def named(cqt):
    return "named"


@task
def fail(cqt, message="boom"):
    raise ValueError(message)


@task
def write_note(cqt, text):
    return Note.objects.create(text=text).pk


@task
def write_then_fail(cqt, text):
    Note.objects.create(text=text)
    raise RuntimeError("after writing")


@task(atomic=False)
def write_then_fail_non_atomic(cqt, text):
    Note.objects.create(text=text)
    raise RuntimeError("after writing")


@task
def spawn(cqt, count):
    for n in range(count):
        cqt.subtask(add, (n, n))
    return "spawned"


@task
def spawn_one_failing(cqt):
    cqt.subtask(add, (1, 1))
    cqt.subtask(fail, ("child failed",))
    return "spawned"


@task
def nest(cqt, depth):
    cqt.log(f"depth {depth}")
    if depth > 0:
        cqt.subtask(nest, (depth - 1,))
    return depth


@task
def return_subtask(cqt):
    return cqt.subtask(add, (2, 3))


@task
def return_chain(cqt):
    return cqt.subtask(add, (1, 2)).chain(add, (10,))


@task
def return_own_follower(cqt):
    return cqt.chain(add, (1,))


@task
def count_attempts(cqt, key, failures):
    """Fails `failures` times, then succeeds; counts attempts in the cache."""
    cache.add(key, 0)
    attempt = cache.incr(key)
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt}")
    return attempt


flaky = task("tests.flaky", retries=2, retry_exceptions=[ConnectionError])(count_attempts.fn)
flaky_any = task("tests.flaky_any", retries=2, retry_exceptions=[])(count_attempts.fn)
flaky_predicate = task(
    "tests.flaky_predicate",
    retries=2,
    retry_exceptions=[lambda exc: "attempt" in str(exc)],
)(count_attempts.fn)
flaky_backoff = task("tests.flaky_backoff", retries=1, retry_delay=1)(count_attempts.fn)
no_retry_for_value_error = task(
    "tests.no_retry_for_value_error", retries=3, retry_exceptions=[ConnectionError]
)(fail.fn)


@task
def log_lines(cqt, count, publish_every=1, limit=40):
    for n in range(count):
        cqt.log(f"line {n}", publish=(n + 1) % publish_every == 0, limit=limit)
    return count


@task
def log_tree(cqt, children, pause=0):
    cqt.log("parent starts")
    for n in range(children):
        cqt.subtask(log_child, (n, pause))
    return "tree"


@task
def log_child(cqt, n, pause=0):
    time.sleep(pause)
    cqt.log(f"child {n}", level=logging.WARNING)
    return n


@task
def sleep(cqt, seconds, key=None):
    if key:
        cache.add(key, 0)
        cache.incr(key)
    time.sleep(seconds)
    return seconds


@task
def record_run(cqt, text):
    """Leaves one Note per run: counting Notes counts runs."""
    Note.objects.create(text=text)
    return text


@task
def return_object(cqt):
    return object()


@task
def raise_system_exit(cqt):
    raise SystemExit(3)


@task
def report_failure(failed, error, label):
    Note.objects.create(text=f"{label}: {failed.func_name}: {error}")


@task
def broken_errorback(failed, error):
    Note.objects.create(text="rolled back with the errorback's savepoint")
    raise TypeError("the errorback is broken")


@task
def errorback_with_cqt(cqt, failed, error, channel):
    """The natural guess at an errorback's signature, which is wrong: no cqt."""


@task
def fail_with_broken_errorback(cqt, label):
    cqt.errorback(broken_errorback)
    cqt.errorback(report_failure, (label,))
    raise ValueError("needs reporting")


@task
def fail_with_errorback(cqt, label):
    cqt.errorback(report_failure, (label,))
    raise ValueError("needs reporting")


def _write_then_wait(cqt, text, flag):
    """Writes a Note, then waits (15 s at most) until the test sets `flag` in the cache."""
    Note.objects.create(text=text)
    deadline = time.monotonic() + 15
    while not cache.get(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "finished"


write_then_wait = task("tests.write_then_wait")(_write_then_wait)
write_then_wait_non_atomic = task("tests.write_then_wait_non_atomic", atomic=False)(
    _write_then_wait
)


@task
def echo(cqt, value, *rest):
    """Returns its first argument: a chained task's view of its predecessor's result."""
    return value


@task
def return_own_follower_chain(cqt):
    return cqt.chain(add, (1,)).chain(add, (2,))


@task
def chain_on_self(cqt, value):
    cqt.chain(add, (100,))
    return value


@task
def spawn_with_errorback(cqt, label):
    cqt.errorback(report_failure, (label,))
    cqt.subtask(fail, ("child failed",))
    return "spawned"


def _broken_predicate(exc):
    raise RuntimeError("predicate is broken")


flaky_broken_predicate = task(
    "tests.flaky_broken_predicate", retries=2, retry_exceptions=[_broken_predicate]
)(count_attempts.fn)


# Not atomic: on SQLite an atomic task holds the database's write lock while it
# runs, so a second one could not even be claimed until the first finished.
@task(atomic=False)
def rendezvous(cqt, key, parties, timeout=15.0):
    """Arrives, then waits for `parties` runs to be inside at once: True only
    if they really ran at the same time."""
    cache.add(key, 0)
    cache.incr(key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cache.get(key) >= parties:
            return True
        time.sleep(0.05)
    return False


@task
def slow_spawn(cqt, seconds, count):
    time.sleep(seconds)
    for n in range(count):
        cqt.subtask(add, (n, n))
    return "spawned late"


@task(retries=1)
def write_then_hang_once(cqt, text, seconds):
    """Writes a Note, then on its first attempt hangs (for a worker to be killed).
    A cache key says the write was made (it is not committed yet)."""
    Note.objects.create(text=text)
    cache.set(f"wrote:{cqt.pk}:{cqt.retries}", True, 300)
    if cqt.retries == 0:
        time.sleep(seconds)
    return text


write_then_hang = task("tests.write_then_hang")(write_then_hang_once.fn)
record_run_at_least_once = task("tests.record_run_at_least_once", at_least_once=True)(record_run.fn)
nap = task("tests.nap", atomic=False)(sleep.fn)


@task(atomic=False)
def spin(cqt, seconds):
    """Keeps a CPU busy, holding the GIL as much as Python lets it, for `seconds`."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1
    return seconds


@task
def raise_keyboard_interrupt(cqt):
    raise KeyboardInterrupt


# Text PostgreSQL cannot store as is: a NUL character, a lone surrogate.
BAD_TEXT = {"nul": "a\x00b", "surrogate": "a\ud800b"}


# Not atomic, like `nap`: on SQLite an atomic task holds the write lock for its
# whole run, and the fault tests need several of them running at once.
@task(atomic=False)
def log_bad_text(cqt, kind, seconds=0):
    """Logs a line the database cannot store as is, then sleeps."""
    cqt.log(BAD_TEXT[kind])
    time.sleep(seconds)
    return kind


@task
def raise_bad_text(cqt, kind):
    raise ValueError(BAD_TEXT[kind])


@task
def return_bad_text(cqt, kind):
    return BAD_TEXT[kind]


@task
def write_log_and_wait(cqt, text, seconds):
    """Writes a Note and logs, waits, logs again (while the test breaks the cache)."""
    Note.objects.create(text=text)
    cqt.log(f"{text} started")
    time.sleep(seconds)
    cqt.log(f"{text} done")
    return text


@task
def spawn_bad_text(cqt):
    cqt.subtask(echo, (BAD_TEXT["nul"],))


@task
def nap_child(cqt, seconds):
    time.sleep(seconds)
    return seconds


@task
def spawn_naps(cqt, count, seconds):
    """A parent of `count` subtasks that each sleep `seconds`."""
    for _ in range(count):
        cqt.subtask(nap_child, (seconds,))
    return count


@task(atomic=False)
def spawn_after_flag(cqt, flag, count):
    """Not atomic: waits (15 s at most) until the test sets `flag` in the cache,
    then spawns `count` subtasks, each committed at once."""
    deadline = time.monotonic() + 15
    while not cache.get(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    for n in range(count):
        cqt.subtask(record_run, (f"late child {n}",))
    return count


@task
def call_directly(cqt, a, b):
    """Calls another task as a plain function, from inside a task."""
    return add(a, b) * 10


@task
def write_then_mark_rollback(cqt, text):
    """Asks for its own writes to be undone, without raising."""
    Note.objects.create(text=text)
    transaction.set_rollback(True)
    return text


@task
def spawn_then_fail(cqt):
    cqt.subtask(add, (1, 1))
    raise RuntimeError("after spawning")


@task
def describe_call(cqt, amount):
    """What the function received, as it saw it: an argument's type and value,
    and what `cqt.subtasks` is once it launched one subtask."""
    from django.db.models import Manager

    cqt.subtask(add, (1, 1))
    return {
        "amount": [type(amount).__name__, amount],
        "subtasks": [isinstance(cqt.subtasks, Manager), cqt.subtasks.count()],
    }


# ---- live progress (cq.live, cq.progress)


@task(atomic=False)
def count_up(cqt, total, pause=0.0, flag=None):
    """Waits (30 s at most) for `flag` in the cache if given, then reports
    progress and logs a line at each of `total` steps."""
    deadline = time.monotonic() + 30
    while flag and not cache.get(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    for step in range(1, total + 1):
        time.sleep(pause)
        cqt.progress(step, total, f"step {step} of {total}")
        cqt.log(f"step {step}")
    return total


@task
def report_often(cqt, seconds):
    """Reports progress as fast as it can for `seconds`; returns how many reports."""
    calls, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        calls += 1
        cqt.progress(calls)
    return calls


@task
def spawn_counters(cqt, count, steps):
    for _ in range(count):
        cqt.subtask(count_up, (steps, 0.05))
    return "spawned"


@task
def bad_progress(cqt):
    cqt.progress(5, 3)
