"""A tree's state as a watcher receives it: counts of its subtasks by status,
the share done, progress stored inline (CQ_SERIAL)."""

import uuid

import pytest
from django.test import override_settings

from cq.execution import run_task
from cq.live.state import snapshot
from cq.models import Task
from tests.app import tasks
from tests.helpers import run_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_parent_shows_its_subtasks_counts_and_the_share_done():
    parent = tasks.spawn.delay(4)
    run_task(parent.pk)
    state = snapshot(Task, parent.pk)
    assert state["task"]["status"] == Task.STATUS_WAITING
    assert state["counts"] == {"Queued": 4}
    assert state["percent"] == 0.0
    first = Task.objects.filter(parent=parent).order_by("submitted").first()
    run_task(first.pk)
    state = snapshot(Task, parent.pk)
    assert state["counts"] == {"Queued": 3, "Success": 1}
    assert state["percent"] == 25.0
    assert [sub["status"] for sub in state["subtasks"]].count("S") == 1


def test_finished_tree_counts_each_outcome():
    parent = tasks.spawn_one_failing.delay()
    run_queued()
    state = snapshot(Task, parent.pk, with_logs=True)
    assert state["task"]["status_label"] == "Incomplete"
    assert state["counts"] == {"Success": 1, "Failure": 1}
    assert state["percent"] == 100.0
    assert state["logs"] == []


@override_settings(CQ_SERIAL=True)
def test_progress_inline_is_stored_and_ends_at_the_last_report():
    task = tasks.count_up.delay(4)
    task.refresh_from_db()
    assert task.status == Task.STATUS_SUCCESS
    assert (task.progress["done"], task.progress["total"]) == (4, 4)
    state = snapshot(Task, task.pk, with_logs=True)
    assert [line["message"] for line in state["logs"]] == [f"step {n}" for n in range(1, 5)]


def test_bad_progress_fails_the_task_with_the_error_named():
    task = tasks.bad_progress.delay()
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == Task.STATUS_FAILURE
    assert task.error == "InvalidProgress: progress done=5 is above total=3"
    assert task.progress is None


@override_settings(CQ_SERIAL=True)
def test_every_failed_attempt_is_kept_with_its_error_and_timings():
    task = tasks.flaky.delay(f"attempts-{uuid.uuid4().hex}", 2)
    task.refresh_from_db()
    assert task.status == Task.STATUS_SUCCESS and task.retries == 2
    assert [entry["error"] for entry in task.attempts] == [
        "ConnectionError: attempt 1",
        "ConnectionError: attempt 2",
    ]
    assert [entry["attempt"] for entry in task.attempts] == [1, 2]
    for entry in task.attempts:
        assert entry["worker"] == "inline"
        assert entry["started"] <= entry["ended"]


def render_progress(task_id):
    from django.template import Context, Template

    return Template("{% load cq_live %}{% cq_progress task_id %}").render(
        Context({"task_id": task_id})
    )


def test_the_progress_tag_draws_the_bar_in_any_language():
    from django.utils import translation

    parent = tasks.spawn.delay(3)
    run_task(parent.pk)
    run_task(Task.objects.filter(parent=parent).order_by("submitted").first().pk)
    with translation.override("de"):  # a decimal comma
        page = render_progress(parent.pk)
    assert 'style="width: 33.3%"' in page and 'aria-valuenow="33"' in page


def test_the_progress_tag_of_a_missing_task_says_so_instead_of_failing():
    missing = uuid.uuid4()
    assert f"No task with id {missing}." in render_progress(missing)
