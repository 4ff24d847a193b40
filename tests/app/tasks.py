"""Tasks the test suite runs, in real workers and inline."""

import logging
import time

from django.core.cache import cache

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
    "tests.flaky_predicate", retries=2,
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
def log_tree(cqt, children):
    cqt.log("parent starts")
    for n in range(children):
        cqt.subtask(log_child, (n,))
    return "tree"


@task
def log_child(cqt, n):
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
def fail_with_errorback(cqt, label):
    cqt.errorback(report_failure, (label,))
    raise ValueError("needs reporting")


@task
def revoke_self_then_write(cqt, text):
    from cq.models import Task

    Note.objects.create(text=text)
    Task.objects.get(pk=cqt.pk).revoke()
    return "ignored"


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
record_run_at_least_once = task("tests.record_run_at_least_once", at_least_once=True)(
    record_run.fn
)


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
