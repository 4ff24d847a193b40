"""`cqt.progress()` from tasks run by real workers: stored on the row while the
task runs, coalesced, and published to the tree's group with status changes
and log lines."""

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import connection

from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.helpers import refreshed, wait_until
from tests.live import GroupListener, run_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def started_worker(start_worker):
    start_worker("--concurrency", "2")
    wait_until(lambda: WorkerHeartbeat.objects.exists(), timeout=60, message="worker up")


def test_progress_is_stored_on_the_row_while_the_task_runs(start_worker):
    started_worker(start_worker)
    task = tasks.count_up.delay(6, 0.4)
    # Seen mid-run, from this process: the row holds a report before the end.
    running = wait_until(
        lambda: (
            Task.objects.filter(pk=task.pk, status=Task.STATUS_RUNNING, progress__isnull=False)
            .values_list("progress", flat=True)
            .first()
        ),
        timeout=30,
        message="progress stored while running",
    )
    assert running["total"] == 6 and 1 <= running["done"] < 6
    assert running["message"] == f"step {running['done']} of 6"
    task.wait(30, raise_on_timeout=True)
    assert task.status == Task.STATUS_SUCCESS
    assert task.progress["done"] == 6 and task.progress["total"] == 6


def test_atomic_task_progress_is_stored_before_it_commits_on_postgresql(start_worker):
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite an atomic task holds the write lock: stored when it commits")
    started_worker(start_worker)
    task = tasks.report_often.delay(3)
    wait_until(
        lambda: Task.objects.filter(
            pk=task.pk, status=Task.STATUS_RUNNING, progress__isnull=False
        ).exists(),
        timeout=30,
        message="an atomic task's progress seen while it runs",
    )
    task.wait(30, raise_on_timeout=True)
    # The last report goes out when the run ends, from the worker's outbox
    # thread: stored just after the outcome, not with it (seen in CI under load).
    wait_until(
        lambda: refreshed(task).progress["done"] == task.result,
        timeout=10,
        message=f"the last report ({task.result}) stored",
    )


def finished(task_id):
    """A predicate on the events: the task's SUCCESS was published."""
    return lambda events: any(
        e["type"] == "cq.task" and e["task_id"] == str(task_id) and e["status"] == "S"
        for e in events
    )


def test_reports_are_coalesced_and_the_last_one_is_kept(start_worker):
    started_worker(start_worker)
    task = tasks.report_often.delay_args((2,), submit=False)

    async def watch():
        async with GroupListener(task.pk) as listener:
            await database_sync_to_async(task.submit)()
            await listener.collect_until(finished(task.pk), timeout=60)
            return listener.of_type("cq.progress")

    reports = run_async(watch)
    task.wait(30, raise_on_timeout=True)
    assert task.result > 1000, "thousands of calls"
    # One report per CQ_PROGRESS_INTERVAL (0.5 s) over 2 s, plus the last one.
    assert 2 <= len(reports) <= 8, [r["progress"]["done"] for r in reports]
    assert reports[-1]["progress"]["done"] == task.result
    assert task.progress["done"] == task.result


def test_status_changes_progress_and_log_lines_reach_the_group(start_worker):
    started_worker(start_worker)
    flag = f"go-{connection.settings_dict['NAME']}"
    task = tasks.count_up.delay(3, 0.0, flag)

    async def watch():
        async with GroupListener(task.pk) as listener:
            cache.set(flag, True, 60)
            return await listener.collect_until(finished(task.pk), timeout=60)

    events = run_async(watch)
    statuses = [e["status"] for e in events if e["type"] == "cq.task"]
    # Each event carries the status as its row stood when it was sent: the
    # enqueue is published as R when the worker claimed it first.
    assert statuses[-1] == "S" and "R" in statuses, events
    lines = [line["message"] for e in events if e["type"] == "cq.log" for line in e["lines"]]
    assert lines == ["step 1", "step 2", "step 3"]
    done = [e["progress"]["done"] for e in events if e["type"] == "cq.progress"]
    assert done[-1] == 3 and done == sorted(done)
    assert all(e["task_id"] == str(task.pk) for e in events if "task_id" in e)


def test_a_task_run_in_a_child_process_sends_its_last_events_before_it_exits(start_worker):
    """A time-limited task runs in a forked child that leaves with os._exit:
    its last progress, log line and SUCCESS must not die with it."""
    started_worker(start_worker)
    task = tasks.count_up.delay_args((3,), time_limit=60, submit=False)

    async def watch():
        async with GroupListener(task.pk) as listener:
            await database_sync_to_async(task.submit)()
            return await listener.collect_until(finished(task.pk), timeout=60)

    events = run_async(watch)
    done = [e["progress"]["done"] for e in events if e["type"] == "cq.progress"]
    assert done[-1] == 3, events
    lines = [line["message"] for e in events if e["type"] == "cq.log" for line in e["lines"]]
    assert lines[-1] == "step 3"
    task.refresh_from_db()
    assert task.progress["done"] == 3, "the last report stored on the row"


def test_nothing_is_published_while_nobody_watches(start_worker):
    started_worker(start_worker)
    # A worker publishes its first events until it has read the mark once.
    tasks.add.delay(1, 1).wait(30, raise_on_timeout=True)
    time.sleep(2)
    task = tasks.count_up.delay_args((3,), submit=False)

    async def listen_without_watching():
        async with GroupListener(task.pk, mark=False) as listener:
            await database_sync_to_async(task.submit)()
            await database_sync_to_async(task.wait)(30, True)
            # Longer than a publish takes (and than a worker's read of the mark).
            await asyncio.sleep(2)
            try:
                await listener.collect_until(lambda events: events, timeout=1)
            except AssertionError:
                pass
            return listener.events

    assert run_async(listen_without_watching) == []
    task.refresh_from_db()
    assert task.progress["done"] == 3, "stored all the same"
