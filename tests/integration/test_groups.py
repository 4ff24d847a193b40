"""Batched claims and group commits, run in this process on the real database:
what a worker's slot does with the tasks it claimed (cq.execution.run_group)."""

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cq import transitions
from cq.execution import run_group
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "group-test:1:abcdef"
# A window no test run comes near: every task of a group shares one transaction.
WIDE = override_settings(CQ_GROUP_COMMIT_WINDOW=60)


def claim(limit=100, queues=("default",)):
    return transitions.claim_batch(Task, list(queues), limit, WORKER, timezone.now())


def statuses(queued):
    rows = dict(Task.objects.filter(pk__in=[t.pk for t in queued]).values_list("pk", "status"))
    return [rows[t.pk] for t in queued]


def test_a_claim_takes_the_highest_priority_first_then_the_oldest():
    low = tasks.add.delay_args((1, 1), priority=-5)
    first = tasks.add.delay_args((2, 2))
    high = tasks.add.delay_args((3, 3), priority=50)
    second = tasks.add.delay_args((4, 4))
    assert [t.pk for t in claim(limit=3)] == [high.pk, first.pk, second.pk]
    assert [t.pk for t in claim()] == [low.pk]


def test_a_claim_takes_only_due_tasks_of_its_queues_and_each_task_once():
    mail = tasks.add.delay_args((1, 1), queue="emails")
    default = tasks.add.delay((2, 2))
    later = tasks.add.delay_args((3, 3), countdown=3600)
    assert [t.pk for t in claim(queues=["emails"])] == [mail.pk]
    assert [t.pk for t in claim(queues=["emails", "default"])] == [default.pk]
    assert claim(queues=["emails", "default"]) == []
    assert Task.objects.get(pk=later.pk).status == Task.STATUS_QUEUED


@WIDE
def test_atomic_tasks_of_a_group_share_a_transaction_and_a_failure_rolls_back_only_its_own():
    queued = [
        tasks.write_note.delay("a"),
        tasks.write_note.delay("b"),
        tasks.write_then_fail.delay("c"),
        tasks.write_note.delay("d"),
    ]
    claimed = claim()
    with CaptureQueriesContext(connection) as queries:
        run_group(claimed)
    assert statuses(queued) == [Task.STATUS_SUCCESS] * 2 + [Task.STATUS_FAILURE] + [
        Task.STATUS_SUCCESS
    ]
    assert sorted(Note.objects.values_list("text", flat=True)) == ["a", "b", "d"]
    assert Task.objects.get(pk=queued[0].pk).result == Note.objects.get(text="a").pk
    # One savepoint per task: they ran inside a transaction of the group.
    savepoints = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) >= 4


@WIDE
def test_a_task_revoked_after_the_claim_does_not_run_and_its_neighbours_do():
    queued = [tasks.write_note.delay(text) for text in "xyz"]
    claimed = claim()
    queued[1].revoke()
    run_group(claimed)
    assert statuses(queued) == [Task.STATUS_SUCCESS, Task.STATUS_REVOKED, Task.STATUS_SUCCESS]
    assert sorted(Note.objects.values_list("text", flat=True)) == ["x", "z"]


@WIDE
def test_an_unstorable_result_in_a_group_fails_that_task_alone():
    queued = [
        tasks.write_note.delay("kept"),
        tasks.return_object.delay(),
        tasks.write_note.delay("kept too"),
    ]
    run_group(claim())
    assert statuses(queued) == [Task.STATUS_SUCCESS, Task.STATUS_FAILURE, Task.STATUS_SUCCESS]
    assert Note.objects.count() == 2


@WIDE
def test_trees_and_chains_in_a_group_complete_as_on_their_own():
    parent = tasks.spawn.delay(2)
    chained = tasks.add.delay(1, 2)
    follower = chained.chain(tasks.add, (10,))
    plain = tasks.add.delay(5, 5)
    for _ in range(5):  # the group, then the subtasks and the released follower
        group = claim()
        if group:
            run_group(group)
    assert Task.objects.get(pk=parent.pk).status == Task.STATUS_SUCCESS
    assert Task.objects.get(pk=follower.pk).result == 13
    assert Task.objects.get(pk=plain.pk).result == 10


@override_settings(CQ_GROUP_COMMIT_WINDOW=0)
def test_with_no_window_each_task_commits_on_its_own():
    queued = [tasks.write_note.delay(text) for text in "pq"]
    run_group(claim())
    assert statuses(queued) == [Task.STATUS_SUCCESS] * 2


def test_claimed_tasks_never_started_go_back_to_queued_without_an_attempt():
    queued = tasks.add.delay(1, 1)
    [claimed] = claim()
    assert transitions.unclaim(Task, [claimed.pk], WORKER) == 1
    queued.refresh_from_db()
    assert (queued.status, queued.worker, queued.retries) == (Task.STATUS_QUEUED, "", 0)
    assert transitions.unclaim(Task, [claimed.pk], WORKER) == 0


@WIDE
def test_tasks_that_do_not_touch_the_database_take_no_savepoint():
    queued = [tasks.add.delay(n, n) for n in range(4)]
    claimed = claim()
    with CaptureQueriesContext(connection) as queries:
        run_group(claimed)
    assert statuses(queued) == [Task.STATUS_SUCCESS] * 4
    assert [Task.objects.get(pk=t.pk).result for t in queued] == [0, 2, 4, 6]
    assert not [q for q in queries.captured_queries if "SAVEPOINT" in q["sql"]]


@WIDE
def test_a_task_that_marks_its_transaction_for_rollback_fails_alone():
    queued = [
        tasks.write_note.delay("before"),
        tasks.write_then_mark_rollback.delay("undone"),
        tasks.write_note.delay("after"),
    ]
    run_group(claim())
    assert statuses(queued) == [Task.STATUS_SUCCESS, Task.STATUS_FAILURE, Task.STATUS_SUCCESS]
    assert sorted(Note.objects.values_list("text", flat=True)) == ["after", "before"]
    assert "set_rollback" in Task.objects.get(pk=queued[1].pk).error


@WIDE
def test_a_failing_task_in_a_group_leaves_no_subtask_and_rings_nothing_for_it():
    queued = [tasks.spawn_then_fail.delay(), tasks.write_note.delay("kept")]
    run_group(claim())
    assert statuses(queued) == [Task.STATUS_FAILURE, Task.STATUS_SUCCESS]
    assert not Task.objects.filter(parent_id=queued[0].pk).exists()
