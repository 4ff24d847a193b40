"""`runworker cq-tasks` as real processes: bounded claims, concurrency, faults, shutdown."""

import re
import signal
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

import cq
from cq import checks
from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat
from cq.worker import Worker
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import channel_depth, channel_key, wait_until

pytestmark = pytest.mark.slow


def wait_done(task, timeout=60):
    wait_until(
        lambda: Task.objects.get(pk=task.pk).is_done,
        timeout=timeout,
        message=f"task {task.func_name} done",
    )
    task.refresh_from_db()
    return task


def wait_running(count=1, timeout=30):
    wait_until(
        lambda: Task.objects.filter(status=Task.STATUS_RUNNING).count() >= count,
        timeout=timeout,
        message=f"{count} task(s) running",
    )


def test_a_worker_runs_tasks_to_completion(start_worker):
    worker = start_worker()
    submitted = [tasks.add.delay(n, n) for n in range(5)]
    done = [wait_done(task) for task in submitted]
    assert [(t.status, t.result) for t in done] == [(Task.STATUS_SUCCESS, 2 * n) for n in range(5)]
    assert {t.worker for t in done} == {WorkerHeartbeat.objects.get().name}
    assert worker.process.poll() is None


def test_a_worker_with_concurrency_two_runs_two_tasks_at_once(start_worker):
    start_worker("--concurrency", "2")
    key = f"meet-{time.monotonic_ns()}"
    pair = [tasks.rendezvous.delay(key, 2) for _ in range(2)]
    assert [wait_done(task).result for task in pair] == [True, True]


def test_a_worker_with_concurrency_one_runs_one_task_at_a_time(start_worker):
    start_worker()
    key = f"meet-{time.monotonic_ns()}"
    pair = [tasks.rendezvous.delay(key, 2, timeout=2) for _ in range(2)]
    assert sorted(wait_done(task).result for task in pair) == [False, True]


def test_claims_are_bounded_and_kill_9_loses_only_the_running_task(start_worker):
    slow = [tasks.sleep.delay(60) for _ in range(4)]
    worker = start_worker()
    wait_running()
    time.sleep(1.5)  # time for a greedy worker to claim more, if it did
    claimed = Task.objects.filter(pk__in=[t.pk for t in slow]).exclude(worker="")
    assert claimed.count() == 1, "the worker claims only what it runs"
    worker.process.send_signal(signal.SIGKILL)
    worker.wait(10)
    statuses = sorted(
        Task.objects.filter(pk__in=[t.pk for t in slow]).values_list("status", flat=True)
    )
    assert statuses == sorted([Task.STATUS_RUNNING] + [Task.STATUS_QUEUED] * 3)


def test_two_workers_never_run_one_task_twice(start_worker):
    for _ in range(2):
        start_worker("--concurrency", "2")
    # Both serving before the tasks come: the first to start could claim all.
    wait_until(lambda: WorkerHeartbeat.objects.count() == 2, message="both workers started")
    submitted = tasks.record_run.delay_many([(str(n),) for n in range(200)])
    ids = [t.pk for t in submitted]
    wait_until(
        lambda: not Task.objects.filter(pk__in=ids).active().exists(),
        timeout=240,
        message="200 tasks done",
    )
    assert Task.objects.filter(pk__in=ids, status=Task.STATUS_SUCCESS).count() == 200
    texts = list(Note.objects.values_list("text", flat=True))
    assert sorted(texts) == sorted(str(n) for n in range(200)), "each task ran exactly once"
    workers = set(Task.objects.filter(pk__in=ids).values_list("worker", flat=True))
    assert len(workers) == 2


def test_parents_complete_when_their_children_finish_on_two_workers(start_worker):
    for _ in range(2):
        start_worker("--concurrency", "2")
    parents = [tasks.spawn.delay(6) for _ in range(8)]
    done = [wait_done(parent, timeout=120) for parent in parents]
    assert {parent.status for parent in done} == {Task.STATUS_SUCCESS}
    assert Task.objects.filter(status=Task.STATUS_SUCCESS).count() == 8 * 7


def test_sigterm_lets_the_running_task_finish_and_starts_nothing_new(start_worker):
    started = f"started-{uuid.uuid4().hex}"
    running = tasks.sleep.delay(3, key=started)
    doorbell.flush()  # its doorbell first in line
    waiting = tasks.add.delay(1, 1)
    worker = start_worker()
    # Its body running, not only its row RUNNING: a task claimed but not yet
    # started is handed back at SIGTERM (QUEUED again), by design.
    wait_until(lambda: cache.get(started), message="the slow task running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert Task.objects.get(pk=running.pk).status == Task.STATUS_SUCCESS
    waiting.refresh_from_db()
    assert (waiting.status, waiting.worker) == (Task.STATUS_QUEUED, ""), "not claimed"
    assert not WorkerHeartbeat.objects.exists(), "a clean stop removes the heartbeat"


def test_an_idle_worker_outlives_the_redis_socket_timeout(start_worker):
    worker = start_worker()
    wait_until(WorkerHeartbeat.objects.exists, message="worker started")
    time.sleep(7)  # longer than redis-py's 5 s default socket timeout
    assert worker.process.poll() is None
    assert wait_done(tasks.add.delay(1, 2)).result == 3
    output = worker.output()
    assert "receive failed" not in output and "Traceback" not in output


def test_malformed_messages_on_the_channel_do_not_stop_the_worker(start_worker, redis_client):
    layer = get_channel_layer()
    for message in [
        {"type": "run_task"},
        {"type": "run_task", "task_id": "not-a-uuid"},
        {"type": "run_task", "task_id": "00000000-0000-0000-0000-000000000000"},
        {"type": "unknown.type", "task_id": "00000000-0000-0000-0000-000000000000"},
        {"no": "type"},
    ]:
        async_to_sync(layer.send)("cq-tasks", message)
    # Not even a dict: written to Redis as channels-redis would write it.
    redis_client.zadd(channel_key(), {layer.serialize("not a dict"): time.time()})
    worker = start_worker()
    wait_until(lambda: channel_depth(redis_client) == 0, message="messages consumed")
    assert wait_done(tasks.add.delay(2, 2)).result == 4
    assert worker.process.poll() is None
    assert worker.output().count("malformed message skipped") == 5


def test_burst_mode_runs_a_whole_tree_then_exits_0(start_worker):
    parent = tasks.slow_spawn.delay(2, 3)
    worker = start_worker("--burst", "--concurrency", "2")
    assert worker.wait(60) == 0
    parent.refresh_from_db()
    assert parent.status == Task.STATUS_SUCCESS
    assert not Task.objects.active().exists()


def test_a_worker_prints_its_banner_as_it_starts(start_worker):
    worker = start_worker("--burst", "--concurrency", "2", "--queues", "default,emails")
    assert worker.wait(60) == 0
    output = worker.output()
    assert f"cq {cq.__version__} worker " in output
    assert "queues:        default, emails" in output
    assert "concurrency:   2" in output
    assert f"database:      {connection.vendor} {connection.settings_dict['NAME']}" in output
    assert "channel layer: default: channels_redis.core.RedisChannelLayer redis://" in output
    assert re.search(r"tasks: +\d+ registered", output)


def test_a_worker_with_work_in_hand_is_not_idle():
    worker = Worker(concurrency=1)
    worker.last_message -= 60
    assert not worker.idle, "its slots have not looked at the table yet"
    worker.slots.wake()
    worker.slots._drained, worker.slots._idle = True, 1  # a claim found nothing
    assert worker.idle
    worker.slots._ready.append(object())
    assert not worker.idle, "its channel may be full: no re-ringing of 'stale' rows"


def test_runworker_for_another_channel_is_channels_own_worker(start_worker):
    start_worker(channel="test-notes")
    time.sleep(1)
    async_to_sync(get_channel_layer().send)("test-notes", {"type": "note.write", "text": "stock"})
    wait_until(lambda: Note.objects.filter(text="stock").exists(), message="note written")


def test_runworker_refuses_a_bad_concurrency_and_mixed_channels(transactional_db):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("runworker", "cq-tasks", "--concurrency", "0")
    with pytest.raises(CommandError, match="worker of its own"):
        call_command("runworker", "cq-tasks", "test-notes")


def test_system_check_e001_when_cq_is_after_channels():
    ordered = ["django.contrib.contenttypes", "cq", "channels"]
    with override_settings(INSTALLED_APPS=ordered):
        assert checks.check_app_order(None) == []
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "channels", "cq"]):
        [error] = checks.check_app_order(None)
    assert error.id == "cq.E001"
    with override_settings(INSTALLED_APPS=["channels", "cq.apps.CQConfig"]):
        assert [e.id for e in checks.check_app_order(None)] == ["cq.E001"]
