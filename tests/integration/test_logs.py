"""Task logs: buffered under the top-level task, stored on its row when the tree is done."""

import contextlib
import logging

import pytest
from django.db import connection
from django.test import override_settings

from cq import completion, logs
from cq.execution import run_task
from cq.models import Task
from cq.running import RunningTask
from tests.app import tasks
from tests.helpers import run_queued

pytestmark = pytest.mark.django_db(transaction=True)


def messages(lines):
    return [line["message"] for line in lines]


def test_a_line_has_message_level_timestamp_and_origin():
    task = tasks.log_lines.delay(1)
    run_task(task.pk)
    task.refresh_from_db()
    [line] = task.logs
    assert line["message"] == "line 0"
    assert line["level"] == "INFO"
    assert line["origin"] == str(task.pk)
    assert line["task"] == "tests.app.tasks.log_lines"
    assert line["timestamp"]


def test_a_line_also_goes_to_python_logging(caplog):
    task = tasks.log_child.delay(7)
    with caplog.at_level(logging.INFO, logger="cq.tasks"):
        run_task(task.pk)
    assert any(r.levelno == logging.WARNING and "child 7" in r.getMessage() for r in caplog.records)


def test_subtask_lines_are_buffered_under_the_root_with_their_origin():
    root = tasks.log_tree.delay(2)
    run_task(root.pk)
    assert messages(logs.buffered(root.pk)) == ["parent starts"]
    children = list(root.subtasks.order_by("args"))
    run_task(children[0].pk)
    buffered = logs.buffered(root.pk)
    assert messages(buffered) == ["parent starts", "child 0"]
    assert buffered[1]["origin"] == str(children[0].pk)
    assert buffered[1]["level"] == "WARNING"
    assert logs.buffered(children[0].pk) == [], "nothing is buffered under a subtask"


def test_lines_are_stored_on_the_root_once_the_tree_finishes():
    root = tasks.nest.delay(3)
    run_task(root.pk)
    run_task(root.subtasks.get().pk)
    root.refresh_from_db()
    assert root.logs == [], "not stored while subtasks run"
    run_queued()
    root.refresh_from_db()
    assert root.status == Task.STATUS_SUCCESS
    assert messages(root.logs) == ["depth 3", "depth 2", "depth 1", "depth 0"]
    assert len({line["origin"] for line in root.logs}) == 4
    assert logs.buffered(root.pk) == [], "the buffer is emptied once stored"


def test_lines_of_a_chain_are_stored_on_its_first_task():
    first = tasks.log_lines.delay(1)
    first.chain(tasks.log_lines)
    run_queued()
    first.refresh_from_db()
    assert messages(first.logs) == ["line 0", "line 0"]


def test_unpublished_lines_wait_for_the_next_published_one():
    task = RunningTask(tasks.add.delay(1, 1))
    task.log("kept back", publish=False)
    assert logs.buffered(task.pk) == []
    task.log("published")
    assert messages(logs.buffered(task.pk)) == ["kept back", "published"]


def test_unpublished_lines_are_published_when_the_task_ends():
    task = tasks.log_lines.delay(5, publish_every=100)
    run_task(task.pk)
    task.refresh_from_db()
    assert messages(task.logs) == [f"line {n}" for n in range(5)]


def test_limit_keeps_only_the_last_lines():
    task = tasks.log_lines.delay(100, publish_every=100, limit=10)
    run_task(task.pk)
    task.refresh_from_db()
    assert messages(task.logs) == [f"line {n}" for n in range(90, 100)]


@override_settings(CQ_MAX_LOG_LINES=5)
def test_the_stored_log_is_capped_by_max_log_lines():
    task = tasks.log_lines.delay(12)
    run_task(task.pk)
    task.refresh_from_db()
    assert messages(task.logs) == [f"line {n}" for n in range(7, 12)]


def test_a_plain_task_that_never_logs_stores_no_lines():
    task = tasks.add.delay(1, 1)
    run_task(task.pk)
    task.refresh_from_db()
    assert task.logs == []


@contextlib.contextmanager
def row_locked_elsewhere(task):
    """Another connection holds the lock that storing `task`'s logs needs (the
    row on PostgreSQL, the whole file on SQLite), and this one gives up after
    0.3 s instead of its configured 30: "database is locked" or PostgreSQL's
    lock timeout, as a busy database gives them."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        if connection.vendor == "sqlite":
            other.isolation_level = None
            other.execute("BEGIN IMMEDIATE")
            setting = "PRAGMA busy_timeout = 300"
        else:
            other.execute("SELECT 1 FROM cq_task WHERE id = %s FOR UPDATE", [task.pk])
            setting = "SET lock_timeout = '300ms'"
        with connection.cursor() as cursor:
            cursor.execute(setting)
        yield
    finally:
        other.rollback()
        other.close()
        connection.close()  # the next test gets this connection's usual timeouts


def test_log_lines_that_cannot_be_stored_are_an_error_counted_by_the_worker(caplog):
    task = tasks.add.delay(1, 2)
    run_queued()
    line = logs.make_line(Task.objects.get(pk=task.pk), "kept in the cache", logging.INFO)
    logs._buffer(task.pk, [line])
    with row_locked_elsewhere(task), caplog.at_level(logging.WARNING, logger="cq.completion"):
        completion._store_logs(Task, task.pk)
        completion._store_logs(Task, task.pk)
    failures = [r for r in caplog.records if "log lines not stored" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.ERROR]
    first, second = (int(r.args[1]) for r in failures)
    assert second == first + 1
    if connection.vendor == "sqlite":
        assert "database is locked" in failures[0].getMessage()
        assert "cq.W008" in failures[0].getMessage()
    # A failed store leaves the lines in the cache, untouched: a store that
    # can take the lock still finds them.
    completion._store_logs(Task, task.pk)
    assert messages(Task.objects.get(pk=task.pk).logs) == ["kept in the cache"]
