"""`async def` cq tasks on a real worker: many at once for I/O, bounded by
--concurrency, with statuses, tracebacks, subtasks and logs as sync tasks have."""

import time

import pytest

from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import statuses, unfinished, wait_until

pytestmark = pytest.mark.slow


@pytest.mark.heavy
def test_two_hundred_sleeping_coroutines_overlap_on_one_worker(start_worker):
    start_worker("--concurrency", "50")
    # A first task: the worker is up and has imported its tasks before the clock starts.
    tasks.async_nap.delay(0).wait(timeout=60, raise_on_timeout=True)
    began = time.monotonic()
    batch = tasks.async_nap.delay_many([(0.2,)] * 200)
    ids = [task.pk for task in batch]
    wait_until(lambda: unfinished(ids) == 0, timeout=60, message="200 naps done")
    elapsed = time.monotonic() - began
    print(f"200 x asyncio.sleep(0.2) with --concurrency 50: {elapsed:.2f}s")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 200}
    # One at a time would take 40 s; 50 at a time, 0.8 s plus the claims.
    assert elapsed < 10


def test_concurrency_bounds_the_coroutines_in_flight(start_worker):
    start_worker("--concurrency", "2")
    batch = tasks.async_nap.delay_many([(0.5,)] * 6)
    ids = [task.pk for task in batch]
    wait_until(lambda: unfinished(ids) == 0, timeout=60, message="6 naps done")
    rows = list(Task.objects.filter(pk__in=ids).values_list("started", "finished"))
    # At no task's start were more than 2 running.
    for started, _ in rows:
        running = sum(1 for s, f in rows if s <= started < f)
        assert running <= 2


def test_a_raising_coroutine_is_failure_with_its_traceback(start_worker):
    start_worker()
    task = tasks.async_fail.delay("nope").wait(timeout=60, raise_on_timeout=True)
    assert task.status == Task.STATUS_FAILURE
    assert task.error == "ValueError: nope"
    assert "async_fail" in task.traceback and "ValueError: nope" in task.traceback


def test_a_coroutine_launches_subtasks_and_logs(start_worker):
    start_worker("--concurrency", "2")
    parent = tasks.async_spawn.delay(3).wait(timeout=60, raise_on_timeout=True)
    assert (parent.status, parent.result) == (Task.STATUS_SUCCESS, "spawned")
    children = parent.subtasks.order_by("args")
    expected = [(Task.STATUS_SUCCESS, 2 * n) for n in range(3)]
    assert [(c.status, c.result) for c in children] == expected
    assert "async parent" in [line["message"] for line in parent.logs]


def test_a_coroutine_writes_with_the_async_orm(start_worker):
    start_worker()
    task = tasks.async_write.delay("from a coroutine").wait(timeout=60, raise_on_timeout=True)
    assert task.status == Task.STATUS_SUCCESS
    assert Note.objects.get(pk=task.result).text == "from a coroutine"
