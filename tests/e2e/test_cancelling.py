"""Revoking a task that runs: pushed to its worker, seen by the task, or stopped (cq.cancelling)."""

import os
import time

import pytest
from django.core.cache import cache

from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import refreshed, wait_until

POSTGRES = os.environ.get("CQ_TEST_DB", "postgres") == "postgres"


def started(task):
    wait_until(lambda: cache.get(f"started:{task.pk}"), 20, message="the task started")
    # Subscribed before its first claim; a margin for the test's own Redis round trips.
    time.sleep(0.2)


@pytest.mark.parametrize(
    "fn",
    [
        tasks.until_cancelled,
        tasks.until_cancelled_in_child,
        tasks.async_until_cancelled,  # sees asyncio.CancelledError
        tasks.async_until_cancelled_in_child,
    ],
)
def test_a_cooperative_task_sees_its_revoke_within_a_second(start_worker, fn):
    start_worker()
    task = fn.delay()
    started(task)
    revoked_at = time.time()
    task.revoke()
    seen = wait_until(lambda: cache.get(f"cancelled:{task.pk}"), 5, message="revoke seen")
    print(f"{fn.name}: revoke seen by the task {seen - revoked_at:.3f}s after revoke()")
    assert seen - revoked_at < 2.0
    assert refreshed(task).status == Task.STATUS_REVOKED
    # It stopped: the worker's only slot runs the next task. Had it not, that
    # slot would be busy for the rest of the test: any deadline tells them apart.
    assert tasks.add.delay(1, 2).wait(timeout=20).result == 3


def test_a_task_that_ignores_its_revoke_ends_revoked_with_its_writes_rolled_back(start_worker):
    start_worker()
    # On SQLite a running atomic task holds the write lock, which a revoke
    # waits for: there, revoke a non-atomic one, whose writes stay.
    fn = tasks.ignore_cancel if POSTGRES else tasks.ignore_cancel_non_atomic
    task = fn.delay("ignored the revoke", 2)
    started(task)
    task.revoke()
    wait_until(lambda: cache.get(f"ended:{task.pk}"), 10, message="the task ran to its end")
    assert tasks.add.delay(1, 2).wait(timeout=10).result == 3  # after its outcome
    row = refreshed(task)
    assert (row.status, row.result) == (Task.STATUS_REVOKED, None)
    assert Note.objects.filter(text="ignored the revoke").exists() == (not POSTGRES)


def test_terminate_kills_a_task_running_in_a_child_process(start_worker):
    worker = start_worker()
    task = tasks.sleep_untimed.delay_args(time_limit=600)
    started(task)
    began = time.monotonic()
    task.revoke(terminate=True)
    assert tasks.add.delay(1, 2).wait(timeout=5).result == 3
    print(f"terminate of a child: next task done {time.monotonic() - began:.3f}s after revoke()")
    assert refreshed(task).status == Task.STATUS_REVOKED
    assert worker.process.poll() is None


def test_terminate_replaces_a_worker_whose_thread_runs_the_task(start_worker):
    # --max-tasks: runworker stays a parent that starts a new worker process (cq.recycling).
    worker = start_worker("--max-tasks", "1000")
    task = tasks.sleep_untimed.delay()
    started(task)
    before = refreshed(task).worker
    began = time.monotonic()
    task.revoke(terminate=True)
    after = tasks.add.delay(1, 2)
    assert after.wait(timeout=20).result == 3
    print(f"terminate of a thread: next task done {time.monotonic() - began:.3f}s after revoke()")
    # A new worker process: the sleeping thread is gone with the old one.
    assert refreshed(after).worker.split(":")[1] != before.split(":")[1]
    assert refreshed(task).status == Task.STATUS_REVOKED
    assert worker.process.poll() is None
    assert not WorkerHeartbeat.objects.filter(name=before).exists()
