"""Running a task in this process: claim, call, record, and what follows it."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from cq.exceptions import InvalidTaskOption
from cq.execution import claim, run_task
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import run_queued, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def fresh(task):
    task.refresh_from_db()
    return task


# ---- claiming


def test_a_task_is_claimed_once():
    task = tasks.add.delay(1, 2)
    assert claim(task.pk, "w1") is not None
    assert claim(task.pk, "w2") is None
    task = fresh(task)
    assert (task.status, task.worker) == (Task.STATUS_RUNNING, "w1")
    assert task.started is not None


def test_two_threads_racing_for_one_task_claim_it_once():
    for _ in range(10):
        task = tasks.add.delay(1, 2)
        barrier = threading.Barrier(2)
        won = []

        def race(worker, task=task, barrier=barrier, won=won):
            try:
                barrier.wait()
                won.append(claim(task.pk, worker) is not None)
            finally:
                connection.close()

        threads = [threading.Thread(target=race, args=(f"w{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(won) == [False, True]


def test_a_task_not_due_yet_is_not_claimed():
    task = tasks.add.delay_args((1, 2), countdown=60)
    assert run_task(task.pk) is None
    assert fresh(task).status == Task.STATUS_QUEUED


def test_running_an_unknown_id_does_nothing():
    assert run_task("00000000-0000-0000-0000-000000000000") is None


def test_a_plain_task_succeeds_with_its_result():
    task = tasks.add.delay(2, 3)
    run_task(task.pk)
    task = fresh(task)
    assert (task.status, task.result, task.error) == (Task.STATUS_SUCCESS, 5, "")
    assert task.finished >= task.started
    assert task.result_expiry is not None


# ---- atomicity


def test_an_atomic_task_commits_its_writes_with_success():
    task = tasks.write_note.delay("kept")
    run_task(task.pk)
    assert fresh(task).result == Note.objects.get(text="kept").pk


def test_an_atomic_task_that_fails_rolls_its_writes_back():
    task = tasks.write_then_fail.delay("rolled back")
    run_task(task.pk)
    task = fresh(task)
    assert task.status == Task.STATUS_FAILURE
    assert task.error == "RuntimeError: after writing"
    assert "Traceback" in task.traceback
    assert not Note.objects.filter(text="rolled back").exists()


def test_a_non_atomic_task_keeps_its_writes_when_it_fails():
    task = tasks.write_then_fail_non_atomic.delay("kept anyway")
    run_task(task.pk)
    assert fresh(task).status == Task.STATUS_FAILURE
    assert Note.objects.filter(text="kept anyway").exists()


def run_revoking_midway(task_function, text):
    """Run a write_then_wait task in a thread and revoke it from here while it runs."""
    flag = f"flag-{time.monotonic_ns()}"
    task = task_function.delay(text, flag)
    runner = threading.Thread(target=lambda: (run_task(task.pk), connection.close()))
    runner.start()
    wait_until(lambda: fresh(task).status == Task.STATUS_RUNNING, message="task running")
    task.revoke()
    cache.set(flag, True)
    runner.join(30)
    return fresh(task)


def test_a_task_revoked_while_running_keeps_revoked_and_no_result():
    task = run_revoking_midway(tasks.write_then_wait_non_atomic, "non-atomic")
    assert (task.status, task.result) == (Task.STATUS_REVOKED, None)


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite holds the write lock for the whole atomic task"
)
def test_an_atomic_task_revoked_while_running_has_its_writes_rolled_back():
    task = run_revoking_midway(tasks.write_then_wait, "rolled back")
    assert (task.status, task.result) == (Task.STATUS_REVOKED, None)
    assert not Note.objects.filter(text="rolled back").exists()


# ---- failures


def test_a_non_json_result_fails_the_task_clearly():
    task = tasks.return_object.delay()
    run_task(task.pk)
    task = fresh(task)
    assert task.status == Task.STATUS_FAILURE
    assert "tests.app.tasks.return_object returned a value that is not JSON" in task.error


def test_a_row_naming_an_unregistered_function_fails_naming_it():
    task = Task.objects.create(func_name="os.system", args=["true"], status=Task.STATUS_QUEUED)
    run_task(task.pk)
    task = fresh(task)
    assert task.status == Task.STATUS_FAILURE
    assert "'os.system'" in task.error


def test_system_exit_in_a_task_is_recorded_as_failure():
    task = tasks.raise_system_exit.delay()
    run_task(task.pk)
    task = fresh(task)
    assert (task.status, task.error) == (Task.STATUS_FAILURE, "SystemExit: 3")


# ---- retries


@pytest.mark.parametrize("flaky", [tasks.flaky, tasks.flaky_predicate, tasks.flaky_any])
def test_a_matching_exception_is_retried_until_success(flaky):
    task = flaky.delay(f"attempts-{flaky.name}-{time.monotonic_ns()}", 2)
    run_task(task.pk)
    task = fresh(task)
    assert (task.status, task.retries) == (Task.STATUS_QUEUED, 1)
    assert task.error == "ConnectionError: attempt 1"
    run_queued()
    task = fresh(task)
    assert (task.status, task.result, task.retries) == (Task.STATUS_SUCCESS, 3, 2)


def test_retries_run_out_in_failure():
    task = tasks.flaky.delay(f"attempts-{time.monotonic_ns()}", 5)
    run_queued()
    task = fresh(task)
    assert (task.status, task.retries, task.error) == (
        Task.STATUS_FAILURE,
        2,
        "ConnectionError: attempt 3",
    )


def test_an_exception_not_listed_fails_at_once():
    task = tasks.no_retry_for_value_error.delay("not retried")
    run_queued()
    task = fresh(task)
    assert (task.status, task.retries) == (Task.STATUS_FAILURE, 0)


def test_a_broken_retry_predicate_fails_the_task_instead_of_losing_it():
    task = tasks.flaky_broken_predicate.delay(f"attempts-{time.monotonic_ns()}", 1)
    run_task(task.pk)
    task = fresh(task)
    assert (task.status, task.retries) == (Task.STATUS_FAILURE, 0)
    assert task.error == "ConnectionError: attempt 1"


def test_a_retry_with_a_delay_waits_with_backoff():
    before = timezone.now()
    task = tasks.flaky_backoff.delay(f"attempts-{time.monotonic_ns()}", 1)
    run_task(task.pk)
    after = timezone.now()
    task = fresh(task)
    assert (task.status, task.retries) == (Task.STATUS_RETRY, 1)
    # retry_delay=1 with jitter: between half and all of the second.
    assert before + timedelta(seconds=0.5) <= task.run_after <= after + timedelta(seconds=1)
    assert run_task(task.pk) is None, "a task waiting for its retry is not run early"


# ---- subtasks


def test_a_parent_waits_for_its_subtasks():
    parent = tasks.spawn.delay(3)
    run_task(parent.pk)
    parent = fresh(parent)
    assert parent.status == Task.STATUS_WAITING
    assert parent.subtasks.count() == 3
    run_queued()
    parent = fresh(parent)
    assert (parent.status, parent.result) == (Task.STATUS_SUCCESS, "spawned")
    assert sorted(parent.subtasks.values_list("result", flat=True)) == [0, 2, 4]


def test_subtasks_work_three_levels_deep():
    root = tasks.nest.delay(3)
    run_queued()
    root = fresh(root)
    assert (root.status, root.result) == (Task.STATUS_SUCCESS, 3)
    tree = Task.objects.filter(root=root)
    assert tree.count() == 3
    assert set(tree.values_list("status", flat=True)) == {Task.STATUS_SUCCESS}
    deepest = tree.get(args=[0])
    assert deepest.parent.parent.parent == root


def test_a_failed_subtask_makes_its_parent_incomplete():
    parent = tasks.spawn_one_failing.delay()
    run_queued()
    parent = fresh(parent)
    assert parent.status == Task.STATUS_INCOMPLETE
    assert "tests.app.tasks.fail" in parent.error and "child failed" in parent.error
    assert parent.result == "spawned"


def test_a_revoked_subtask_makes_its_parent_incomplete():
    parent = tasks.spawn.delay(2)
    run_task(parent.pk)
    parent.subtasks.first().revoke()
    run_queued()
    parent = fresh(parent)
    assert parent.status == Task.STATUS_INCOMPLETE
    assert "revoked" in parent.error


def test_returning_a_subtask_takes_its_result():
    task = tasks.return_subtask.delay()
    run_queued()
    task = fresh(task)
    assert (task.status, task.result) == (Task.STATUS_SUCCESS, 5)


def test_returning_a_chain_takes_the_result_of_its_last_task():
    task = tasks.return_chain.delay()
    run_queued()
    task = fresh(task)
    assert (task.status, task.result) == (Task.STATUS_SUCCESS, 13)


@pytest.mark.parametrize("returner", [tasks.return_own_follower, tasks.return_own_follower_chain])
def test_returning_its_own_chained_follower_fails_clearly(returner):
    task = returner.delay()
    run_queued()
    task = fresh(task)
    assert task.status == Task.STATUS_FAILURE
    assert "can only start after it finishes" in task.error
    assert not Task.objects.active().exists(), "nothing is left waiting forever"


# ---- chains


def test_a_chained_task_receives_the_previous_result():
    first = tasks.add.delay(1, 2)
    second = first.chain(tasks.add, (10,))
    third = second.chain(tasks.echo)
    assert fresh(second).status == Task.STATUS_PENDING
    run_queued()
    assert [fresh(t).result for t in (first, second, third)] == [3, 13, 13]
    assert fresh(second).previous == first


def test_chaining_after_a_finished_task_queues_at_once():
    first = tasks.add.delay(1, 2)
    run_task(first.pk)
    second = first.chain(tasks.add, (1,))
    assert second.status == Task.STATUS_QUEUED
    assert second.args == [3, 1]
    run_queued()
    assert fresh(second).result == 4


def test_a_chain_stops_after_a_failure():
    first = tasks.fail.delay()
    second = first.chain(tasks.echo)
    third = second.chain(tasks.echo)
    run_queued()
    assert fresh(second).status == Task.STATUS_REVOKED
    assert fresh(third).status == Task.STATUS_REVOKED


def test_force_chain_runs_after_a_failure_with_none():
    first = tasks.fail.delay()
    second = first.chain(tasks.echo, ("extra",), force_chain=True)
    run_queued()
    second = fresh(second)
    assert (second.status, second.result, second.args) == (
        Task.STATUS_SUCCESS,
        None,
        [None, "extra"],
    )


def test_a_running_task_can_chain_after_itself():
    task = tasks.chain_on_self.delay(5)
    run_queued()
    follower = Task.objects.get(previous=task)
    assert (follower.status, follower.result) == (Task.STATUS_SUCCESS, 105)


# ---- errorbacks


def test_an_errorback_is_called_on_final_failure():
    task = tasks.fail_with_errorback.delay("alert")
    run_queued()
    assert fresh(task).status == Task.STATUS_FAILURE
    note = Note.objects.get()
    assert note.text == "alert: tests.app.tasks.fail_with_errorback: ValueError: needs reporting"


def test_an_errorback_is_called_when_a_subtask_fails():
    task = tasks.spawn_with_errorback.delay("tree")
    run_queued()
    assert fresh(task).status == Task.STATUS_INCOMPLETE
    assert Note.objects.get().text.startswith("tree: tests.app.tasks.spawn_with_errorback: subtask")


def test_a_failing_errorback_is_noted_in_the_task_error_and_the_others_still_run():
    task = tasks.fail_with_broken_errorback.delay("alert")
    run_queued()
    task = fresh(task)
    assert task.status == Task.STATUS_FAILURE
    assert task.error == (
        "ValueError: needs reporting\n"
        "errorback tests.app.tasks.broken_errorback failed: TypeError: the errorback is broken"
    )
    # The broken errorback's own write rolled back; the next errorback ran.
    assert Note.objects.get().text.startswith("alert: tests.app.tasks.fail_with_broken_errorback")


def test_an_errorback_that_cannot_take_the_failed_task_and_error_is_refused():
    task = tasks.add.delay(1, 1)
    with pytest.raises(InvalidTaskOption, match=r"errorback_with_cqt\(cqt, failed.*no cqt"):
        task.errorback(tasks.errorback_with_cqt, ("#ops",))
    with pytest.raises(InvalidTaskOption, match="too many"):
        task.errorback(tasks.report_failure, ("label", "extra"))
    task.errorback(tasks.report_failure, kwargs={"label": "ok"})
    assert [e["func_name"] for e in fresh(task).errorbacks] == [tasks.report_failure.name]


def test_no_errorback_is_called_on_success():
    task = tasks.add.delay(1, 1)
    task.errorback(tasks.report_failure, ("never",))
    run_queued()
    assert fresh(task).status == Task.STATUS_SUCCESS
    assert not Note.objects.exists()
