"""Time limits: a task past its limit is stopped, whatever it is doing (cq.time_limits)."""

import socket
import time

import pytest
from django.core.cache import cache

from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import alive, refreshed, wait_until

# The limit of the tasks below, and the most we allow between it and the
# recorded failure (measured: see docs/controls.md).
LIMIT = 1.0
BOUND = 2.0


@pytest.fixture
def silent_server():
    """A port whose server accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield server.getsockname()[1]
    server.close()


def finished(task):
    row = refreshed(task)
    return row if row.is_done else None


def stopped_after(row):
    """Seconds from the claim to the recorded failure."""
    return (row.finished - row.started).total_seconds()


@pytest.mark.parametrize("kind", ["python loop", "time.sleep", "socket read"])
def test_a_task_past_its_time_limit_fails_and_its_writes_are_gone(
    start_worker, silent_server, kind
):
    worker = start_worker("--concurrency", "2")
    text = f"limited {kind}"
    task = {
        "python loop": lambda: tasks.spin_forever.delay(text),
        "time.sleep": lambda: tasks.sleep_forever.delay(text),
        "socket read": lambda: tasks.read_forever.delay(text, silent_server),
    }[kind]()
    row = wait_until(lambda: finished(task), 30, message="the limited task done")
    assert row.status == Task.STATUS_FAILURE, (row.status, row.error)
    assert row.error.startswith("TimeLimitExceeded:"), row.error
    print(f"{kind}: limit {LIMIT:g}s, failure recorded {stopped_after(row):.3f}s after the claim")
    assert LIMIT <= stopped_after(row) < LIMIT + BOUND
    # It ran, in a process of its own, wrote, and its write was rolled back.
    assert cache.get(f"started:{task.pk}") not in (None, worker.pid)
    assert cache.get(f"wrote:{task.pk}") == cache.get(f"started:{task.pk}")
    assert not Note.objects.filter(text=text).exists()
    # The worker goes on serving.
    assert tasks.add.delay(2, 3).wait(timeout=10).result == 5


def test_a_slot_serves_other_tasks_while_a_limited_task_runs(start_worker):
    start_worker("--concurrency", "2")
    # Not atomic: on SQLite an atomic task holds the write lock while it runs.
    limited = tasks.sleep_untimed.delay_args(time_limit=10)
    wait_until(lambda: cache.get(f"started:{limited.pk}"), 20, message="limited task started")
    began = time.monotonic()
    # Done while the limited task still runs: a slot that waited on it would
    # be free only at its 10 s limit. 8 s leaves the round trip (tens of ms)
    # a wide margin on a loaded machine.
    assert tasks.add.delay(1, 1).wait(timeout=8).result == 2
    assert time.monotonic() - began < 8
    assert not refreshed(limited).is_done
    row = wait_until(lambda: finished(limited), 30, message="the limited task done")
    assert row.status == Task.STATUS_FAILURE


def test_a_time_limit_per_call_stops_a_task_without_one(start_worker):
    start_worker()
    task = tasks.sleep_untimed.delay_args(time_limit=LIMIT)
    row = wait_until(lambda: finished(task), 30, message="the task done")
    assert (row.status, row.time_limit) == (Task.STATUS_FAILURE, LIMIT)
    assert row.error.startswith("TimeLimitExceeded:"), row.error
    assert stopped_after(row) < LIMIT + BOUND


def test_a_task_past_its_time_limit_is_retried_by_its_retry_rules(start_worker):
    start_worker()
    task = tasks.sleep_then_retry.delay("retried")
    row = wait_until(lambda: finished(task), 30, message="the task done")
    assert (row.status, row.result, row.retries) == (Task.STATUS_SUCCESS, "second attempt", 1)
    # The first attempt's write was rolled back, the second's committed.
    assert Note.objects.filter(text="retried").count() == 1


def test_a_limited_task_does_not_outlive_its_killed_worker(start_worker):
    worker = start_worker()
    task = tasks.sleep_untimed.delay_args(time_limit=600)
    child = wait_until(lambda: cache.get(f"started:{task.pk}"), 20, message="the task started")
    worker.kill()
    wait_until(lambda: not alive(child), 5, message="the task's process gone with its worker")


@pytest.mark.slow
@pytest.mark.heavy
def test_what_a_time_limit_costs_a_task(start_worker):
    """Prints tasks/s of one worker with and without a time limit (a fork each)."""
    start_worker()
    rates = {}
    for label, limit in (("no limit", None), ("time_limit=60", 60)):
        began = time.monotonic()
        ids = [tasks.add.delay_args((n, n), time_limit=limit).pk for n in range(COST_TASKS)]
        wait_until(
            lambda ids=ids: not Task.objects.filter(pk__in=ids).exclude(status="S").exists(),
            120,
            message=f"{COST_TASKS} tasks done ({label})",
        )
        rates[label] = COST_TASKS / (time.monotonic() - began)
    print(", ".join(f"{label}: {rate:.0f} tasks/s" for label, rate in rates.items()))
    assert rates["time_limit=60"] > 5


COST_TASKS = 200
