"""A task's outcome is one guarded status change that depends on nothing else:
text the database cannot store, an unreachable cache, or one bad row never
leave a task RUNNING, undo its writes, or stop the recovery of others."""

import os
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from cq import logs, recovery
from cq.execution import run_task
from cq.models import Task, WorkerHeartbeat
from cq.running import RunningTask
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import (
    DEAD,
    FAST,
    TIMEOUT,
    FakeWorker,
    errors,
    refreshed,
    running,
    statuses,
    unfinished,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

POSTGRES = os.environ.get("CQ_TEST_DB", "postgres") == "postgres"
ESCAPED = {"nul": "a\\x00b", "surrogate": "a\\ud800b"}


def messages(task):
    return [line["message"] for line in refreshed(task).logs]


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_a_task_logging_unstorable_text_succeeds_and_keeps_the_line_escaped(kind):
    task = tasks.log_bad_text.delay(kind)
    run_task(task.pk)
    assert refreshed(task).status == Task.STATUS_SUCCESS, task.error
    assert messages(task) == [ESCAPED[kind]]


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_an_exception_with_unstorable_text_is_a_failure_with_its_message(kind):
    task = tasks.raise_bad_text.delay(kind)
    run_task(task.pk)
    task = refreshed(task)
    assert task.status == Task.STATUS_FAILURE
    assert task.error == f"ValueError: {ESCAPED[kind]}"
    assert ESCAPED[kind] in task.traceback


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_a_result_with_unstorable_text_is_a_failure_that_says_why(kind):
    task = tasks.return_bad_text.delay(kind)
    run_task(task.pk)
    task = refreshed(task)
    assert task.status == Task.STATUS_FAILURE
    assert "returned a value that is not JSON the database can store" in task.error
    assert "DataError" not in task.error


def test_a_task_that_logs_while_the_cache_is_down_succeeds_with_its_writes(private_redis, caplog):
    task = tasks.write_log_and_wait.delay("cache down", 0)
    private_redis.stop()
    try:
        run_task(task.pk)
    finally:
        private_redis.start()
    assert refreshed(task).status == Task.STATUS_SUCCESS, task.error
    assert Note.objects.filter(text="cache down").count() == 1
    assert task.logs == []
    assert "task log lines dropped" in caplog.text


def test_the_log_buffer_keeps_only_the_newest_lines_the_row_would_keep(settings):
    settings.CQ_MAX_LOG_LINES = 50
    task = tasks.log_lines.delay(1000)
    run_task(task.pk, worker="w")
    assert messages(task) == [f"line {n}" for n in range(950, 1000)]


def test_a_tree_logging_without_end_holds_a_bounded_number_of_cache_keys(settings, redis_client):
    settings.CQ_MAX_LOG_LINES = 20
    task = tasks.log_lines.delay(500)
    # Buffer under a parent that is not done yet: nothing is stored, all is kept.
    task.status = Task.STATUS_RUNNING
    for n in range(500):
        logs.log(RunningTask(task), f"line {n}")
    keys = list(redis_client.scan_iter(match=f"*cq:logs:{task.pk}:*", count=1000))
    assert len(keys) <= 21  # 20 slots and the counter
    assert [line["message"] for line in logs.buffered(task.pk)] == [
        f"line {n}" for n in range(480, 500)
    ]


def test_a_dead_workers_task_whose_tree_logged_unstorable_text_is_marked_lost():
    now = timezone.now()
    WorkerHeartbeat.objects.create(name=DEAD, seen=now - timedelta(seconds=45))
    poisoned = running(tasks.log_bad_text, now, args=["nul"])
    logs.log(RunningTask(poisoned), tasks.BAD_TEXT["nul"])
    others = [running(tasks.sleep, now, args=[300]) for _ in range(3)]
    assert recovery.sweep(FakeWorker(), now) == 4
    assert statuses([poisoned.pk, *(t.pk for t in others)]) == {Task.STATUS_LOST: 4}
    assert messages(poisoned) == [ESCAPED["nul"]]


@pytest.mark.skipif(not POSTGRES, reason="a trigger that refuses one row's update")
def test_one_row_the_database_refuses_does_not_stop_the_recovery_of_the_others(caplog):
    now = timezone.now()
    WorkerHeartbeat.objects.create(name=DEAD, seen=now - timedelta(seconds=45))
    orphans = [running(tasks.sleep, now, args=[300]) for _ in range(5)]
    refused = orphans[2]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION cq_test_refuse() RETURNS trigger AS $$ BEGIN "
            f"IF OLD.id = '{refused.pk}' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER cq_test_refuse BEFORE UPDATE ON cq_task "
            "FOR EACH ROW EXECUTE FUNCTION cq_test_refuse()"
        )
    try:
        recovered = recovery.sweep(FakeWorker(), now)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER cq_test_refuse ON cq_task")
            cursor.execute("DROP FUNCTION cq_test_refuse()")
    assert recovered == 4
    others = [t.pk for t in orphans if t is not refused]
    assert statuses(others) == {Task.STATUS_LOST: 4}
    assert refreshed(refused).status == Task.STATUS_RUNNING
    assert f"task not recovered id={refused.pk}" in caplog.text


# ---- with real workers


@pytest.mark.slow
def test_killed_worker_with_a_task_that_logged_a_nul_has_all_its_tasks_recovered(start_worker):
    victim = start_worker("--concurrency", "4", env=FAST)
    ids = [tasks.log_bad_text.delay("nul", 300).pk]
    ids += [tasks.nap.delay(300).pk for _ in range(3)]
    wait_until(lambda: statuses(ids) == {Task.STATUS_RUNNING: 4}, 30, message="all claimed")
    wait_until(lambda: logs.buffered(ids[0]), 30, message="the line buffered")
    victim.kill()
    rescuer = start_worker(env=FAST)
    wait_until(lambda: not unfinished(ids), TIMEOUT * 2 + 30, message="all recovered")
    assert statuses(ids) == {Task.STATUS_LOST: 4}, errors(ids)
    assert [line["message"] for line in Task.objects.get(pk=ids[0]).logs] == [ESCAPED["nul"]]
    assert "housekeeping step failed" not in rescuer.output()


@pytest.mark.slow
def test_atomic_tasks_that_log_through_a_redis_outage_succeed_with_their_writes(
    start_worker, private_redis
):
    # On SQLite an atomic task holds the write lock while it runs: one at a time.
    count = 4 if POSTGRES else 1
    worker = start_worker("--concurrency", "4", env={**FAST, **private_redis.env})
    ids = [tasks.write_log_and_wait.delay(f"outage {n}", 3).pk for n in range(count)]
    wait_until(lambda: statuses(ids) == {Task.STATUS_RUNNING: count}, 30, message="all running")
    wait_until(lambda: all(logs.buffered(pk) for pk in ids), 30, message="first lines")
    private_redis.stop()
    time.sleep(5)  # the tasks log their last line and finish while Redis is down
    private_redis.start()
    wait_until(lambda: not unfinished(ids), 60, message="all done")
    assert statuses(ids) == {Task.STATUS_SUCCESS: count}, errors(ids)
    assert Note.objects.filter(text__startswith="outage ").count() == count
    assert "task log lines dropped" in worker.output()
