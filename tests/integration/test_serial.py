"""Inline runs, through the worker's own execution path: direct calls (which
leave no row behind), and `.delay()` under CQ_SERIAL (which stores its rows). No worker."""

import time

import pytest
from django.test import override_settings

from cq.exceptions import DuplicateSubmitError
from cq.models import Task, delay
from tests.app import tasks
from tests.app.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

serial = override_settings(CQ_SERIAL=True)


# ---- direct calls


def test_a_direct_call_returns_the_result_and_writes_no_row():
    assert tasks.add(2, 3) == 5
    assert not Task.objects.exists()


def test_a_direct_call_raises_the_task_exception():
    with pytest.raises(ValueError, match="boom"):
        tasks.fail()


def test_a_direct_call_is_atomic():
    with pytest.raises(RuntimeError):
        tasks.write_then_fail("rolled back")
    assert not Note.objects.exists()


def test_a_direct_call_runs_subtasks_and_chains_inline():
    assert tasks.return_chain() == 13
    assert tasks.spawn(3) == "spawned"
    assert not Task.objects.exists()


def test_a_direct_call_retries_then_raises_the_last_exception_and_leaves_no_row():
    key = f"direct-{time.monotonic_ns()}"
    with pytest.raises(ConnectionError, match="attempt 3"):
        tasks.flaky(key, 5)
    assert not Task.objects.exists()


def test_a_direct_call_from_a_task_runs_at_once():
    assert tasks.call_directly(2, 3) == 50
    with override_settings(CQ_SERIAL=True):
        assert tasks.call_directly.delay(2, 3).result == 50


# ---- CQ_SERIAL


@serial
def test_serial_delay_stores_the_row_and_runs_it_at_once():
    task = tasks.add.delay(2, 3)
    assert (task.status, task.result) == (Task.STATUS_SUCCESS, 5)
    assert task.wait(1) is task
    stored = Task.objects.get()
    assert (stored.pk, stored.status, stored.result) == (task.pk, Task.STATUS_SUCCESS, 5)
    assert stored.started is not None and stored.finished is not None


@serial
def test_serial_delay_runs_even_inside_a_transaction_that_never_commits():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        assert tasks.add.delay(2, 3).result == 5
        raise RuntimeError("rolled back")
    assert not Task.objects.exists()


@serial
def test_serial_delay_records_a_failure_instead_of_raising():
    task = tasks.fail.delay("recorded")
    assert task.status == Task.STATUS_FAILURE
    assert task.error == "ValueError: recorded"
    assert "Traceback" in task.traceback


@serial
def test_serial_delay_checks_arguments_like_a_worker_would():
    with pytest.raises(TypeError, match="JSON"):
        tasks.add.delay(object(), 1)
    with pytest.raises(TypeError, match="JSON"):
        delay(tasks.add, args=(float("nan"), 1))


@serial
def test_serial_delay_fails_a_non_json_result():
    task = tasks.return_object.delay()
    assert task.status == Task.STATUS_FAILURE
    assert "not JSON" in task.error


@serial
def test_serial_subtasks_chains_and_returned_tasks_behave_as_with_workers():
    assert tasks.spawn.delay(3).status == Task.STATUS_SUCCESS
    assert tasks.return_subtask.delay().result == 5
    assert tasks.return_chain.delay().result == 13
    incomplete = tasks.spawn_one_failing.delay()
    assert incomplete.status == Task.STATUS_INCOMPLETE
    assert "child failed" in incomplete.error


@serial
def test_serial_chain_on_the_running_task_runs_after_it():
    task = tasks.chain_on_self.delay(5)
    [follower] = task.next.all()
    assert (follower.status, follower.result) == (Task.STATUS_SUCCESS, 105)


@serial
def test_serial_task_returning_its_own_follower_fails_clearly():
    for returner in (tasks.return_own_follower, tasks.return_own_follower_chain):
        task = returner.delay()
        assert task.status == Task.STATUS_FAILURE
        assert "can only start after it finishes" in task.error


@serial
def test_serial_force_chain_and_stopped_chain():
    failed = tasks.fail.delay()
    assert failed.chain(tasks.echo).status == Task.STATUS_REVOKED
    forced = failed.chain(tasks.echo, ("x",), force_chain=True)
    assert (forced.status, forced.args) == (Task.STATUS_SUCCESS, [None, "x"])


@serial
def test_serial_retries_run_again_at_once():
    task = tasks.flaky.delay(f"attempts-{time.monotonic_ns()}", 2)
    assert (task.status, task.result, task.retries) == (Task.STATUS_SUCCESS, 3, 2)


@serial
def test_serial_errorback_is_called():
    task = tasks.fail_with_errorback.delay("serial")
    assert task.status == Task.STATUS_FAILURE
    assert Note.objects.get().text == (
        "serial: tests.app.tasks.fail_with_errorback: ValueError: needs reporting"
    )


@serial
def test_serial_logs_collect_on_the_top_task():
    task = tasks.log_tree.delay(2)
    assert [line["message"] for line in task.logs] == ["parent starts", "child 0", "child 1"]
    assert {line["origin"] for line in task.logs[1:]} == {str(c.pk) for c in task.subtasks.all()}
    assert all(line["timestamp"] for line in task.logs)
    limited = tasks.log_lines.delay(100, publish_every=100, limit=10)
    assert limited.logs[0]["message"] == "line 90"


@serial
def test_serial_pending_task_runs_on_submit_once():
    task = tasks.add.delay_args((3,), submit=False)
    assert task.status == Task.STATUS_PENDING
    assert task.submit(1).result == 4
    with pytest.raises(DuplicateSubmitError):
        task.submit(1)
    revoked = tasks.add.delay_args((3,), submit=False).revoke()
    assert revoked.submit(1).status == Task.STATUS_REVOKED


@serial
def test_serial_delay_many_runs_each_call():
    results = [t.result for t in tasks.add.delay_many([(1, 2), (3, 4)])]
    assert results == [3, 7]
