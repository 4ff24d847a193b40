"""The sweeper's decisions, in this process, with time passed in (no worker killed here:
tests/e2e/test_faults.py kills real ones)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cq import channel, execution, recovery, serial
from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import DEAD, FakeWorker, running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def dead_worker(now):
    return WorkerHeartbeat.objects.create(name=DEAD, seen=now - timedelta(seconds=45))


def status_of(task):
    task.refresh_from_db()
    return task.status


def test_task_of_dead_worker_with_retries_left_is_requeued_and_rung(now, dead_worker):
    task = running(tasks.flaky, now, args=["key", 0])
    assert recovery.sweep(FakeWorker(), now) == 1
    task.refresh_from_db()
    assert (task.status, task.retries) == (Task.STATUS_QUEUED, 1)
    assert task.error.startswith(f"WorkerLost: worker {DEAD} died while running this task")
    assert "requeued" in task.error
    doorbell.flush()
    assert str(task.pk) in channel.inspect().task_ids


def test_at_least_once_task_is_requeued_whatever_its_retries(now, dead_worker):
    task = running(tasks.record_run_at_least_once, now, args=["x"], retries=7)
    recovery.sweep(FakeWorker(), now)
    task.refresh_from_db()
    assert (task.status, task.retries) == (Task.STATUS_QUEUED, 8)


def test_task_without_retries_is_marked_lost_saying_the_worker_died_and_when(now, dead_worker):
    task = running(tasks.add, now, args=[1, 2])
    recovery.sweep(FakeWorker(), now)
    task.refresh_from_db()
    assert task.status == Task.STATUS_LOST
    assert task.finished is not None
    heard = dead_worker.seen.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert task.error.startswith(
        f"WorkerLost: worker {DEAD} died while running this task (last heartbeat {heard}"
    )
    assert task.error.endswith("marked lost")


def test_task_whose_retries_are_used_up_is_lost(now, dead_worker):
    task = running(tasks.flaky, now, args=["key", 0], retries=2)
    recovery.sweep(FakeWorker(), now)
    assert status_of(task) == Task.STATUS_LOST


def test_unknown_task_of_dead_worker_is_lost(now, dead_worker):
    task = Task.objects.create(
        func_name="tests.gone",
        status=Task.STATUS_RUNNING,
        worker=DEAD,
        started=now - timedelta(seconds=50),
    )
    recovery.sweep(FakeWorker(), now)
    assert status_of(task) == Task.STATUS_LOST


def test_long_task_of_live_worker_is_left_alone(now):
    WorkerHeartbeat.objects.create(name="slow:3:cccccc", seen=now - timedelta(seconds=2))
    task = running(tasks.sleep, now, worker="slow:3:cccccc", started_ago=3600, args=[3600])
    assert recovery.sweep(FakeWorker(), now) == 0
    assert status_of(task) == Task.STATUS_RUNNING


def test_worker_without_heartbeat_row_is_judged_after_the_timeout(now):
    young = running(tasks.add, now, worker="new:4:dddddd", started_ago=5, args=[1, 1])
    old = running(tasks.add, now, worker="gone:5:eeeeee", started_ago=40, args=[1, 1])
    recovery.sweep(FakeWorker(), now)
    assert status_of(young) == Task.STATUS_RUNNING
    assert status_of(old) == Task.STATUS_LOST
    assert "(no heartbeat," in old.error


def test_task_run_by_stock_runworker_without_heartbeat_is_left_alone(now):
    task = running(tasks.add, now, worker="", started_ago=3600, args=[1, 1])
    recovery.sweep(FakeWorker(), now)
    assert status_of(task) == Task.STATUS_RUNNING


def test_task_run_inline_is_left_alone_however_long_it_runs(now):
    # A direct call `fn(...)` (from a shell, a management command) or a
    # CQ_SERIAL `.delay()` runs in its caller's thread, which keeps no
    # heartbeat: judged dead, its task would be marked LOST or run again.
    task = running(tasks.add, now, worker=serial.INLINE, started_ago=3600, args=[1, 2])
    assert recovery.sweep(FakeWorker(), now) == 0
    assert status_of(task) == Task.STATUS_RUNNING


def test_sweeper_judges_nobody_until_its_own_heartbeat_is_steady(now, dead_worker):
    task = running(tasks.add, now, args=[1, 1])
    assert recovery.sweep(FakeWorker(steady=False), now) == 0
    assert status_of(task) == Task.STATUS_RUNNING


def test_lost_subtask_completes_its_waiting_parent_as_incomplete(now, dead_worker):
    parent = Task.objects.create(func_name=tasks.spawn.name, status=Task.STATUS_WAITING)
    child = running(tasks.add, now, args=[1, 1], parent=parent, root=parent)
    recovery.sweep(FakeWorker(), now)
    assert status_of(child) == Task.STATUS_LOST
    parent.refresh_from_db()
    assert parent.status == Task.STATUS_INCOMPLETE
    assert "WorkerLost" in parent.error


def test_lost_task_runs_its_errorbacks_and_releases_its_chain(now, dead_worker):
    errorback = {"func_name": tasks.report_failure.name, "args": ["alert"], "kwargs": {}}
    task = running(tasks.add, now, args=[1, 1], errorbacks=[errorback])
    revoked = Task.objects.create(func_name=tasks.add.name, args=[1], previous=task)
    forced = Task.objects.create(
        func_name=tasks.add.name, args=[1], previous=task, force_chain=True
    )
    recovery.sweep(FakeWorker(), now)
    assert Note.objects.get().text.startswith("alert: tests.app.tasks.add: WorkerLost")
    assert status_of(revoked) == Task.STATUS_REVOKED
    assert status_of(forced) == Task.STATUS_QUEUED


def test_own_task_that_this_worker_no_longer_runs_is_recovered(now):
    me = FakeWorker(name="me:6:ffffff")
    WorkerHeartbeat.objects.create(name=me.name, seen=now)
    orphan = running(tasks.add, now, worker=me.name, started_ago=1, args=[1, 1])
    recovery.sweep(me, now)
    orphan.refresh_from_db()
    assert orphan.status == Task.STATUS_LOST
    assert orphan.error.startswith("WorkerLost: worker me:6:ffffff could not record")


def test_own_task_still_running_here_is_left_alone(now):
    task = running(tasks.add, now, worker="me:6:ffffff", started_ago=3600, args=[1, 1])
    recovery.sweep(FakeWorker(name="me:6:ffffff", running=[task.pk]), now)
    assert status_of(task) == Task.STATUS_RUNNING


def test_task_recovered_by_one_sweeper_is_left_alone_by_another(now, dead_worker):
    task = running(tasks.flaky, now, args=["key", 0])
    [(seen_by_second, reason)] = recovery.orphans(FakeWorker(), now)
    assert recovery.sweep(FakeWorker(), now) == 1
    assert recovery.recover(seen_by_second, reason) is False
    assert recovery.mark_lost(seen_by_second, reason) is False
    task.refresh_from_db()
    assert (task.status, task.retries) == (Task.STATUS_QUEUED, 1)


def test_late_outcome_of_a_worker_presumed_dead_is_discarded_and_rolled_back(now):
    task = Task.objects.create(
        func_name=tasks.write_then_hang_once.name, args=["late", 0], status=Task.STATUS_QUEUED
    )
    claimed = execution.claim(task.pk, "slow:7:gggggg")
    assert recovery.requeue(Task.objects.get(pk=task.pk), "presumed dead")
    assert execution.claim(task.pk, "other:8:hhhhhh") is not None
    # The first attempt ends after the second one started: same status, not the same attempt.
    execution.execute(claimed)
    task.refresh_from_db()
    assert (task.status, task.retries, task.worker) == (Task.STATUS_RUNNING, 1, "other:8:hhhhhh")
    assert not Note.objects.exists()


def test_heartbeats_of_long_dead_workers_are_forgotten(now):
    WorkerHeartbeat.objects.create(name="ancient", seen=now - timedelta(hours=2))
    WorkerHeartbeat.objects.create(name="recent", seen=now - timedelta(minutes=5))
    recovery.forget_dead_workers(FakeWorker(), now)
    assert list(WorkerHeartbeat.objects.values_list("name", flat=True)) == ["recent"]
