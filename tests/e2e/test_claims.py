"""Queues, priorities and batched claims with real worker processes."""

import signal
import time

import pytest
from django.db import transaction
from django.db.models import Count

from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import FAST, channel_key, statuses, unfinished, wait_until

pytestmark = pytest.mark.slow


def wait_all_done(ids, timeout=120):
    wait_until(lambda: not unfinished(ids), timeout, message=f"{len(ids)} tasks done")


def test_with_one_busy_slot_high_priority_tasks_run_first_once_it_frees(start_worker):
    # Not atomic: on SQLite an atomic task holds the write lock while it runs,
    # and the burst below would wait for it.
    blocker = tasks.nap.delay(2)
    start_worker()
    wait_until(
        lambda: Task.objects.get(pk=blocker.pk).status == Task.STATUS_RUNNING,
        message="the slot busy",
    )
    with transaction.atomic():  # the burst becomes visible at once
        low = [tasks.write_note.delay_args((f"low {n}",), priority=-10) for n in range(3)]
        high = [tasks.write_note.delay_args((f"high {n}",), priority=10) for n in range(3)]
    assert Task.objects.get(pk=blocker.pk).status == Task.STATUS_RUNNING, "still busy"
    wait_all_done([t.pk for t in low + high])
    ran = list(Note.objects.order_by("id").values_list("text", flat=True))
    assert ran == [f"high {n}" for n in range(3)] + [f"low {n}" for n in range(3)]


def test_a_worker_runs_only_its_queues_and_the_others_wait_for_theirs(start_worker, redis_client):
    mine = [tasks.write_note.delay_args((f"a {n}",), queue="a") for n in range(5)]
    theirs = [tasks.write_note.delay_args((f"b {n}",), queue="b") for n in range(5)]
    start_worker("--queues", "a", "--concurrency", "2", env=FAST)
    wait_all_done([t.pk for t in mine])
    time.sleep(2)  # the feeder has rung b's rows meanwhile: still not run here
    waiting = Task.objects.filter(pk__in=[t.pk for t in theirs])
    assert set(waiting.values_list("status", "worker")) == {(Task.STATUS_QUEUED, "")}
    # Redis wiped: no doorbell is left for b; a b worker finds its rows in the table.
    redis_client.delete(channel_key() + ".b", channel_key() + ".a", channel_key())
    start_worker("--queues", "b", env=FAST)
    wait_all_done([t.pk for t in theirs])
    assert Note.objects.filter(text__startswith="b ").count() == 5


def test_an_idle_worker_of_a_queue_is_woken_for_it_at_once(start_worker):
    worker = start_worker("--queues", "emails,default")
    assert tasks.add.delay(1, 1).wait(timeout=30).status == Task.STATUS_SUCCESS
    time.sleep(1)  # idle, blocked on both channels
    began = time.monotonic()
    task = tasks.add.delay_args((2, 2), queue="emails").wait(timeout=30)
    assert task.status == Task.STATUS_SUCCESS
    # Well under CQ_REQUEUE_AFTER (10 s): the doorbell woke it, not the feeder.
    assert time.monotonic() - began < 5
    assert worker.process.poll() is None


@pytest.mark.heavy
def test_two_workers_of_eight_slots_run_5000_tasks_each_exactly_once(start_worker):
    for _ in range(2):
        start_worker("--concurrency", "8")
    queued = []
    for first in range(0, 5000, 1000):
        queued += tasks.record_run.delay_many([(str(n),) for n in range(first, first + 1000)])
    ids = [t.pk for t in queued]
    wait_all_done(ids, timeout=300)
    assert statuses(ids) == {Task.STATUS_SUCCESS: 5000}
    runs = Note.objects.values("text").annotate(runs=Count("id"))
    assert runs.count() == 5000 and {row["runs"] for row in runs} == {1}, "one run per task"


@pytest.mark.heavy
def test_kill_9_mid_batch_leaves_no_task_running_and_none_ran_twice(start_worker):
    victim = start_worker("--concurrency", "4", env=FAST)
    queued = tasks.record_run.delay_many([(str(n),) for n in range(3000)])
    ids = [t.pk for t in queued]
    wait_until(lambda: unfinished(ids) <= 2500, 120, message="the batches under way")
    victim.process.send_signal(signal.SIGKILL)
    victim.wait(10)
    start_worker("--concurrency", "4", env=FAST)
    wait_all_done(ids, timeout=300)
    rows = Task.objects.filter(pk__in=ids)
    lost = {args[0] for args in rows.filter(status=Task.STATUS_LOST).values_list("args", flat=True)}
    done = rows.filter(status=Task.STATUS_SUCCESS).count()
    assert done + len(lost) == 3000, statuses(ids)
    # A task marked Lost left no write (atomic: its transaction died with the
    # worker); every other task wrote exactly once.
    runs = dict(Note.objects.values_list("text").annotate(Count("id")))
    assert not lost & set(runs)
    assert len(runs) == done and set(runs.values()) == {1}
    assert len(lost) <= 4 * 32, "at most a group per slot of the dead worker"
