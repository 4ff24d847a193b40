"""Tasks the test suite runs, in real workers and inline."""

import asyncio
import logging
import os
import socket
import subprocess
import time

from asgiref.sync import sync_to_async
from django.conf import settings
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
def log_tree(cqt, children, pause=0, queues=()):
    """Logs, and launches `children` that log; on `queues` in turn if given."""
    cqt.log("parent starts")
    for n in range(children):
        fields = {"queue": queues[n % len(queues)]} if queues else {}
        cqt.subtask(log_child, (n, pause), **fields)
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


# ---- `async def` tasks (cq.coroutines)


@task
async def async_nap(cqt, seconds):
    await asyncio.sleep(seconds)
    return seconds


@task
async def async_fail(cqt, message):
    await asyncio.sleep(0)
    raise ValueError(message)


@task
async def async_spawn(cqt, count):
    """Launches subtasks from a coroutine and logs, then finishes with them."""
    cqt.log("async parent")
    for n in range(count):
        await cqt.asubtask(add, (n, n))
    return "spawned"


@task
async def async_count_up(cqt, total):
    """Reports progress from a coroutine at each of `total` steps."""
    for step in range(1, total + 1):
        await asyncio.sleep(0)
        cqt.progress(step, total, f"step {step} of {total}")
    return total


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
async def async_chain(cqt, value):
    """Chains a task after itself from a coroutine: it receives this one's result."""
    await cqt.achain(add, (10,))
    return value


@task
async def async_write(cqt, text):
    """Writes with Django's async ORM."""
    note = await Note.objects.acreate(text=text)
    return note.pk


if settings.DJANGO_TASKS_API:
    # Tasks written with Django's own API only; the worker imports them here.
    from tests.app import dtasks  # noqa: E402, F401

# ---- time limits and cancelling (cq.time_limits, cq.cancelling)


def _started(cqt, text=None):
    """Writes a Note if given its `text` (rolled back with an atomic task's
    transaction) and says in the cache that the task runs, and in which process.
    On SQLite the write takes the database's write lock until the task ends:
    tasks to be revoked while they run write nothing before."""
    cache.set(f"started:{cqt.pk}", os.getpid(), 300)
    if text is not None:
        Note.objects.create(text=text)
        cache.set(f"wrote:{cqt.pk}", os.getpid(), 300)


@task(time_limit=1)
def spin_forever(cqt, text):
    _started(cqt, text)
    while True:
        pass


@task(time_limit=1)
def sleep_forever(cqt, text):
    _started(cqt, text)
    time.sleep(3600)


@task(time_limit=1)
def read_forever(cqt, text, port):
    """Blocked in recv() on a server that accepts and never sends."""
    _started(cqt, text)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.recv(1)


# Not atomic, like the tasks below that are revoked while they run: on SQLite
# an atomic task holds the write lock (BEGIN IMMEDIATE) until it ends, and a
# revoke would wait for it.
@task(atomic=False)
def sleep_untimed(cqt, seconds=3600):
    """No time limit: runs in a slot thread of its worker."""
    _started(cqt)
    time.sleep(seconds)
    return seconds


@task(time_limit=1, retries=1, retry_exceptions=[TimeoutError])
def sleep_then_retry(cqt, text):
    _started(cqt, text)
    if cqt.retries == 0:
        time.sleep(3600)
    return "second attempt"


def _until_cancelled(cqt):
    """Waits (60 s at most) for a revoke, notes in the cache when it saw it, and stops."""
    _started(cqt)
    deadline = time.monotonic() + 60
    while not cqt.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    cache.set(f"cancelled:{cqt.pk}", time.time(), 300)
    cqt.check_cancelled()
    return "never cancelled"


until_cancelled = task("tests.until_cancelled", atomic=False)(_until_cancelled)
until_cancelled_in_child = task("tests.until_cancelled_in_child", atomic=False, time_limit=120)(
    _until_cancelled
)


async def _async_until_cancelled(cqt):
    """Awaits (60 s at most); its revoke cancels it: notes in the cache when
    it saw asyncio.CancelledError, and lets it go on."""
    await sync_to_async(_started)(cqt)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await sync_to_async(cache.set)(f"cancelled:{cqt.pk}", time.time(), 300)
        raise
    return "never cancelled"


async_until_cancelled = task("tests.async_until_cancelled")(_async_until_cancelled)
async_until_cancelled_in_child = task("tests.async_until_cancelled_in_child", time_limit=120)(
    _async_until_cancelled
)


def _ignore_cancel(cqt, text, seconds):
    """Runs `seconds` whatever happens, then writes, and says when it ended."""
    _started(cqt)
    time.sleep(seconds)
    Note.objects.create(text=text)
    cache.set(f"ended:{cqt.pk}", time.time(), 300)
    return text


ignore_cancel = task("tests.ignore_cancel")(_ignore_cancel)
ignore_cancel_non_atomic = task("tests.ignore_cancel_non_atomic", atomic=False)(_ignore_cancel)


@task
def bad_progress(cqt):
    cqt.progress(5, 3)


# ---- the programs a task starts (cq.proctree)
# Not atomic: on SQLite an atomic task holds the write lock while it runs, and
# a revoke would wait for it.


def _start_program(cqt, seconds):
    """Starts `sleep seconds` and says its pid in the cache (not in a row: the
    tests read it while the task runs)."""
    program = subprocess.Popen(["sleep", str(seconds)])
    cache.set(f"program:{cqt.pk}", program.pid, 600)
    return program


@task(atomic=False)
def run_program(cqt, seconds=300):
    """Waits for its program; returns how it ended (-15: by SIGTERM)."""
    return _start_program(cqt, seconds).wait()


@task(atomic=False, time_limit=60)
def program_signals(cqt):
    """What a program this task starts inherits, and whether terminate() stops it."""
    program = _start_program(cqt, 300)
    with open(f"/proc/{program.pid}/status") as status:
        fields = dict(line.split(":\t", 1) for line in status.read().splitlines())
    program.terminate()
    try:
        code = program.wait(20)
    except subprocess.TimeoutExpired:
        code = None
    return {
        "ignored": int(fields["SigIgn"], 16),
        "blocked": int(fields["SigBlk"], 16),
        "returncode": code,
    }


@task(atomic=False, time_limit=60)
def leave_program(cqt):
    """Returns at once, its program left running."""
    return _start_program(cqt, 300).pid


from tests.app import controls_tasks  # noqa: E402, F401 - registers the controls tests' tasks
