"""Fault injection with real worker processes, real Redis and a real database:
workers killed with SIGKILL, Redis wiped, stopped and restarted, doorbells expired,
a backlog far beyond the channel's capacity, the database cut off, slow tasks."""

import os
import threading
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.db.utils import OperationalError
from django.test import override_settings

from cq.doorbell import doorbell
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.faults import TcpProxy, free_port
from tests.helpers import (
    FAST,
    TIMEOUT,
    channel_key,
    channel_layers,
    errors,
    refreshed,
    statuses,
    unfinished,
    wait_until,
)

pytestmark = pytest.mark.slow

POSTGRES = os.environ.get("CQ_TEST_DB", "postgres") == "postgres"


def worker_pid(task):
    return int(task.worker.split(":")[1])


def notes_written_twice():
    return list(Note.objects.values("text").annotate(n=Count("pk")).filter(n__gt=1))


def kill_worker_running(task, workers):
    """SIGKILL the worker that claimed `task`, once the task made its (uncommitted) write."""
    wait_until(lambda: refreshed(task).status == Task.STATUS_RUNNING, 30, message="claim")
    wait_until(lambda: cache.get(f"wrote:{task.pk}:0"), 30, message="the task's write")
    [victim] = [worker for worker in workers if worker.pid == worker_pid(task)]
    victim.kill()
    return victim, time.monotonic()


def test_killed_worker_task_with_retries_completes_elsewhere_with_writes_once(start_worker):
    workers = [start_worker(env=FAST) for _ in range(2)]
    task = tasks.write_then_hang_once.delay("killed once", 300)
    victim, killed_at = kill_worker_running(task, workers)

    wait_until(lambda: refreshed(task).retries == 1, TIMEOUT + 30, message="requeue")
    print(f"kill -9 -> requeued: {time.monotonic() - killed_at:.2f}s (worker timeout {TIMEOUT}s)")
    refreshed(task).wait(60)

    assert task.status == Task.STATUS_SUCCESS, task.error
    assert worker_pid(task) != victim.pid
    assert Note.objects.filter(text="killed once").count() == 1


def test_killed_worker_task_without_retries_is_lost_with_a_clear_error(start_worker):
    workers = [start_worker(env=FAST) for _ in range(2)]
    task = tasks.write_then_hang.delay("killed for good", 300)
    _, killed_at = kill_worker_running(task, workers)
    name = task.worker

    wait_until(lambda: refreshed(task).status == Task.STATUS_LOST, TIMEOUT + 30, message="LOST")
    print(f"kill -9 -> lost: {time.monotonic() - killed_at:.2f}s (worker timeout {TIMEOUT}s)")

    assert task.error.startswith(
        f"WorkerLost: worker {name} died while running this task (last heartbeat "
    )
    assert not Note.objects.filter(text="killed for good").exists()


def test_tasks_queued_when_redis_is_wiped_all_complete(start_worker, private_redis):
    queued = tasks.record_run.delay_many([(f"wiped {n}",) for n in range(50)])
    doorbell.flush()
    assert private_redis.client.zcard(channel_key()) == 50
    private_redis.client.flushdb()

    start_worker("--concurrency", "4", env={**FAST, **private_redis.env})
    ids = [task.pk for task in queued]
    wait_until(lambda: not unfinished(ids), 60, message="all tasks done")

    assert statuses(ids) == {Task.STATUS_SUCCESS: 50}, errors(ids)
    assert Note.objects.count() == 50 and not notes_written_twice()


def test_redis_down_for_seconds_during_a_run_all_complete_none_twice(start_worker, private_redis):
    env = {**FAST, **private_redis.env}
    workers = [start_worker("--concurrency", "4", env=env) for _ in range(2)]
    ids = [task.pk for task in tasks.record_run.delay_many([(f"run {n}",) for n in range(300)])]
    wait_until(lambda: unfinished(ids) <= 270, 60, message="the run under way")

    private_redis.stop()
    left_when_stopped = unfinished(ids)
    time.sleep(4)
    private_redis.start()
    wait_until(lambda: not unfinished(ids), 120, message="all tasks done")

    assert left_when_stopped >= 100, "the outage came too late to test anything"
    assert statuses(ids) == {Task.STATUS_SUCCESS: 300}, errors(ids)
    assert Note.objects.count() == 300 and not notes_written_twice()
    for worker in workers:
        assert worker.process.poll() is None
        assert "channel layer receive failed" in worker.output()


def test_delay_while_redis_is_down_commits_and_runs_once_redis_is_back(start_worker, private_redis):
    private_redis.stop()
    task = tasks.record_run.delay("redis was down")
    doorbell.flush()
    assert refreshed(task).status == Task.STATUS_QUEUED

    private_redis.start()
    start_worker(env={**FAST, **private_redis.env})
    refreshed(task).wait(60)

    assert task.status == Task.STATUS_SUCCESS
    assert Note.objects.filter(text="redis was down").count() == 1


@pytest.mark.heavy
def test_backlog_far_beyond_channel_capacity_completes_with_redis_bounded(
    start_worker, redis_client
):
    capacity, count = 100, 5000 if POSTGRES else 1000
    depths, done = [], threading.Event()

    def sample():
        while not done.is_set():
            depths.append(redis_client.zcard(channel_key()))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with override_settings(CHANNEL_LAYERS=channel_layers(capacity=capacity)):
            ids = [task.pk for task in tasks.add.delay_many([(n, n) for n in range(count)])]
            doorbell.flush()
            env = {**FAST, "CQ_TEST_CAPACITY": str(capacity)}
            for _ in range(2):
                start_worker("--concurrency", "4", env=env)
            wait_until(lambda: not unfinished(ids), 600, interval=0.5, message="all tasks done")
    finally:
        done.set()
        sampler.join()

    assert statuses(ids) == {Task.STATUS_SUCCESS: count}, errors(ids)
    print(f"channel depth: max {max(depths)} over {len(depths)} samples")
    assert max(depths) <= capacity


def test_tasks_complete_after_their_doorbells_expired(start_worker, redis_client):
    with override_settings(CHANNEL_LAYERS=channel_layers(expiry=1)):
        expiring = tasks.record_run.delay_many([(f"expired {n}",) for n in range(20)])
        ids = [task.pk for task in expiring]
        doorbell.flush()
        wait_until(lambda: not redis_client.exists(channel_key()), 10, message="expiry")
        start_worker(env={**FAST, "CQ_TEST_CHANNEL_EXPIRY": "1"})
        wait_until(lambda: not unfinished(ids), 60, message="all tasks done")

    assert statuses(ids) == {Task.STATUS_SUCCESS: 20}, errors(ids)


def test_slow_tasks_filling_every_slot_of_a_live_worker_are_not_lost(start_worker):
    env = {**FAST, "CQ_TEST_WORKER_TIMEOUT": "2", "CQ_TEST_HEARTBEAT_INTERVAL": "0.3"}
    busy = start_worker("--concurrency", "2", env=env)
    # One task sleeps, one keeps a CPU busy (and the GIL mostly held), each for
    # more than three times the worker timeout. Not atomic: on SQLite an atomic
    # task holds the write lock, and so blocks every heartbeat, for its whole run.
    slow = [tasks.nap.delay(7), tasks.spin.delay(7)]
    wait_until(
        lambda: all(refreshed(t).status == Task.STATUS_RUNNING for t in slow),
        30,
        message="both claimed",
    )
    assert [worker_pid(task) for task in slow] == [busy.pid, busy.pid]
    start_worker(env=env)  # a second sweeper, with nothing to run

    for task in slow:
        refreshed(task).wait(60)
        assert (task.status, task.retries, task.error) == (Task.STATUS_SUCCESS, 0, "")


@pytest.mark.skipif(not POSTGRES, reason="SQLite has no server to cut off")
def test_database_cut_off_for_seconds_worker_resumes_and_tasks_complete_once(start_worker):
    proxy = TcpProxy(int(connection.settings_dict["PORT"]))
    proxy.start()
    try:
        worker = start_worker(
            "--concurrency", "4", env={**FAST, "CQ_TEST_PG_PORT": str(proxy.port)}
        )
        calls = [(f"cut {n}",) for n in range(200)]
        ids = [task.pk for task in tasks.record_run_at_least_once.delay_many(calls)]
        wait_until(lambda: unfinished(ids) <= 170, 60, message="the run under way")
        proxy.cut()
        time.sleep(4)
        proxy.restore()
        wait_until(lambda: not unfinished(ids), 120, message="all tasks done")
    finally:
        proxy.stop()

    assert statuses(ids) == {Task.STATUS_SUCCESS: 200}, errors(ids)
    assert Note.objects.count() == 200 and not notes_written_twice()
    assert worker.process.poll() is None
    assert "database unreachable" in worker.output()


def test_task_raising_system_exit_or_keyboard_interrupt_fails_and_worker_lives_on(start_worker):
    worker = start_worker()
    exits, interrupts, adds = (
        tasks.raise_system_exit.delay(),
        tasks.raise_keyboard_interrupt.delay(),
        tasks.add.delay(1, 2),
    )
    for task in (exits, interrupts, adds):
        refreshed(task).wait(30)
    assert (exits.status, exits.error) == (Task.STATUS_FAILURE, "SystemExit: 3")
    assert (interrupts.status, interrupts.error) == (Task.STATUS_FAILURE, "KeyboardInterrupt: ")
    assert adds.status == Task.STATUS_SUCCESS
    assert worker.process.poll() is None


def test_delay_while_database_is_down_raises_and_rings_nothing(transactional_db, redis_client):
    key, nowhere = ("PORT", str(free_port())) if POSTGRES else ("NAME", "/nonexistent/cq.sqlite3")
    working = connection.settings_dict[key]
    connection.close()
    connection.settings_dict[key] = nowhere
    try:
        with pytest.raises(OperationalError):
            tasks.add.delay(1, 2)
    finally:
        connection.close()
        connection.settings_dict[key] = working
    doorbell.flush()
    assert redis_client.zcard(channel_key()) == 0
    assert not Task.objects.exists()
