"""The task admin as the operator's console (issue 13): newest first, top-level
tasks by default, filters and search, a tree view, every attempt, coloured
statuses and log levels, retry and revoke actions behind the change permission."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from cq import TaskNotRetryable
from cq.admin.tree import render_tree
from cq.models import RepeatingTask, Task
from tests.app import tasks
from tests.unit.test_admin import TASK_LIST, change_url, messages_of, offered_actions, staff_client

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


def make(func="tests.app.tasks.add", status="S", minutes=0, **fields):
    return Task.objects.create(
        func_name=func, status=status, submitted=T0 + timedelta(minutes=minutes), **fields
    )


def listed(client, **params):
    """The ids the task list shows, in its order."""
    response = client.get(TASK_LIST, params)
    assert response.status_code == 200
    return [str(task.pk) for task in response.context["cl"].result_list]


def act(client, action, objects):
    return client.post(
        TASK_LIST,
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


def test_list_is_newest_first_and_top_level_by_default(admin_client):
    old, new = make(minutes=1), make(minutes=2)
    child = make(minutes=3, parent=new, root=new)
    assert listed(admin_client) == [str(new.pk), str(old.pk)]
    assert listed(admin_client, level="all") == [str(child.pk), str(new.pk), str(old.pk)]
    assert listed(admin_client, level="sub") == [str(child.pk)]
    # The tree of a task is a click away, and a search finds a subtask.
    assert listed(admin_client, root__id__exact=new.pk) == [str(child.pk)]
    assert listed(admin_client, q=str(child.pk)) == [str(child.pk)]


def test_filters_by_status_queue_function_worker_and_date(admin_client):
    failed = make(func="tests.app.tasks.fail", status="F", queue="emails", worker="w1")
    make(minutes=60 * 24 * 40)  # another month
    assert listed(admin_client, status__exact="F") == [str(failed.pk)]
    assert listed(admin_client, queue__exact="emails") == [str(failed.pk)]
    assert listed(admin_client, func_name="tests.app.tasks.fail") == [str(failed.pk)]
    assert listed(admin_client, worker="w1") == [str(failed.pk)]
    assert listed(admin_client, submitted__year=2026, submitted__month=11) == [str(failed.pk)]


def test_search_by_error_text(admin_client):
    failed = make(status="F", error="ValueError: bad address")
    make()
    assert listed(admin_client, q="bad address") == [str(failed.pk)]


def test_statuses_are_coloured(admin_client):
    make(status="F")
    page = admin_client.get(TASK_LIST).content.decode()
    assert 'class="cq-status" style="color:#fff;background:#dc2626' in page
    assert ">Failure</span>" in page


def test_task_page_draws_the_tree_and_links_the_failed_subtask(admin_client):
    parent = make(func="tests.app.tasks.spawn_one_failing", status="I")
    ok = make(status="S", parent=parent, root=parent)
    failed = make(func="tests.app.tasks.fail", status="F", parent=parent, root=parent)
    Task.objects.filter(pk=parent.pk).update(error=f"a subtask failed: {failed.pk}")
    Task.objects.filter(pk=failed.pk).update(error="ValueError: child failed")
    page = admin_client.get(change_url(parent)).content.decode()
    assert page.count(change_url(failed)) >= 3  # in the error, the tree, the subtask list
    assert change_url(ok) in page and "ValueError: child failed" in page
    assert 'class="cq-tree"' in page
    assert f'data-cq-task="{parent.pk}"' in page  # the live progress bar


def test_the_tree_draws_the_tasks_chained_after_a_top_level_task(admin_client):
    top = make(func="tests.app.tasks.add", minutes=0)
    follower = make(func="tests.app.tasks.identity", minutes=1, previous=top, root=top)
    last = make(func="tests.app.tasks.add", minutes=2, previous=follower, root=top)
    for shown in (top, follower, last):
        tree = str(render_tree(shown))
        assert all(change_url(task) in tree for task in (top, follower, last)), tree
        assert tree.index(change_url(top)) < tree.index(change_url(follower))
        assert tree.index(change_url(follower)) < tree.index(change_url(last))
    assert "<strong>tests.app.tasks.identity</strong>" in str(render_tree(follower))


def test_every_attempt_is_shown(admin_client):
    task = make(
        status="S",
        retries=1,
        attempts=[
            {
                "attempt": 1,
                "worker": "w1",
                "started": "2026-11-25T09:00:00",
                "ended": "2026-11-25T09:00:02",
                "error": "ConnectionError: attempt 1",
            }
        ],
    )
    page = admin_client.get(change_url(task)).content.decode()
    assert "Earlier attempts" in page and "ConnectionError: attempt 1" in page


def test_log_levels_are_coloured(admin_client):
    line = {"timestamp": "t", "level": "WARNING", "task": "x", "message": "careful"}
    task = make(logs=[line])
    page = admin_client.get(change_url(task)).content.decode()
    assert '<td style="color:#b45309">WARNING</td>' in page


def test_retry_action_queues_the_same_call_linked_to_the_old_task(admin_client):
    failed = make(
        func="tests.app.tasks.add", status="F", args=[2, 3], queue="emails", time_limit=5.0
    )
    succeeded = make(status="S")
    response = act(admin_client, "retry_tasks", [failed, succeeded])
    assert "1 task retried." in messages_of(response)
    assert any("1 task skipped" in message for message in messages_of(response))
    again = Task.objects.get(retry_of=failed)
    assert (again.func_name, again.args, again.queue, again.time_limit, again.status) == (
        "tests.app.tasks.add",
        [2, 3],
        "emails",
        5.0,
        Task.STATUS_QUEUED,
    )
    assert not Task.objects.filter(retry_of=succeeded).exists()
    page = admin_client.get(change_url(failed)).content.decode()
    assert "retried as" in page and change_url(again) in page


def test_revoke_action_revokes_active_tasks_only(admin_client):
    queued = tasks.add.delay(1, 2)
    done = make(status="S")
    response = act(admin_client, "revoke_tasks", [queued, done])
    assert "1 task revoked (with its subtasks and chained tasks)." in messages_of(response)
    assert Task.objects.get(pk=queued.pk).status == Task.STATUS_REVOKED
    assert Task.objects.get(pk=done.pk).status == Task.STATUS_SUCCESS


@pytest.mark.parametrize("action", ["retry_tasks", "revoke_tasks"])
def test_a_view_only_user_cannot_retry_or_revoke(client, action):
    viewer = staff_client(client, "view_task")
    failed, queued = make(status="F"), tasks.add.delay(1, 2)
    assert offered_actions(viewer.get(TASK_LIST)) == []
    response = act(viewer, action, [failed, queued])
    assert response.status_code == 200 and not messages_of(response)
    assert not Task.objects.filter(retry_of=failed).exists()
    assert Task.objects.get(pk=queued.pk).status == Task.STATUS_QUEUED


def test_a_user_with_change_permission_can_retry_and_revoke(client):
    editor = staff_client(client, "view_task", "change_task")
    assert offered_actions(editor.get(TASK_LIST)) == ["retry_tasks", "revoke_tasks"]
    failed = make(status="L")
    assert "1 task retried." in messages_of(act(editor, "retry_tasks", [failed]))


def test_task_retry_in_code_refuses_a_task_that_did_not_fail():
    succeeded = make(status="S")
    with pytest.raises(TaskNotRetryable, match="is Success: only a failed"):
        succeeded.retry()
    lost = make(status="L", args=[1, 1])
    again = lost.retry()
    assert again.retry_of_id == lost.pk and again.args == [1, 1]


def test_repeating_tasks_show_their_last_runs_status(admin_client):
    repeating = RepeatingTask.schedule("0 3 * * *", tasks.add, (1, 2))
    make(status="S", minutes=1, repeating_task=repeating)
    make(status="F", minutes=2, repeating_task=repeating)
    page = admin_client.get(reverse("admin:cq_repeatingtask_changelist")).content.decode()
    assert "Last run&#x27;s status" in page
    assert ">Failure</span>" in page


# ---- the dashboard

DASHBOARD = reverse("admin:cq_dashboard")


def test_dashboard_shows_counts_queues_workers_and_the_last_hour(admin_client):
    from cq.models import WorkerHeartbeat

    make(status="Q", queue="emails")
    make(status="R", worker="w1")
    Task.objects.filter(status="R").update(started=T0)
    WorkerHeartbeat.objects.create(name="w1")
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    figures = response.context["figures"]
    assert figures["tasks"]["queued"] == 1 and figures["tasks"]["running"] == 1
    assert [queue["queue"] for queue in figures["queues"]] == ["default", "emails"]
    (worker,) = figures["workers"]
    assert worker["alive"] and [t["func_name"] for t in worker["tasks"]] == ["tests.app.tasks.add"]
    page = response.content.decode()
    assert 'data-cq-path="/cq/live/dashboard/"' in page
    assert DASHBOARD in admin_client.get(TASK_LIST).content.decode()


def test_dashboard_needs_the_view_permission_on_tasks(client):
    viewer = staff_client(client, "view_repeatingtask")
    assert viewer.get(DASHBOARD).status_code == 403
    from django.contrib.auth.models import Permission

    viewer_user = viewer.session.get("_auth_user_id")
    from django.contrib.auth.models import User

    User.objects.get(pk=viewer_user).user_permissions.add(
        Permission.objects.get(codename="view_task")
    )
    assert viewer.get(DASHBOARD).status_code == 200
