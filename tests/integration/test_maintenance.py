"""cq's own maintenance tasks (cq/tasks.py)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from cq import doorbell, registry, scheduler
from cq.consumers import run_task
from cq.models import RepeatingTask, Task, schedule_task
from cq.tasks import clean_up, feed, sweep

DONE, ACTIVE = Task.STATUS_SUCCESS, Task.STATUS_QUEUED


def make(status=DONE, expired=True, **fields):
    expiry = timezone.now() + timedelta(hours=-1 if expired else 1)
    return Task.objects.create(
        func_name="tests.app.tasks.add", status=status, result_expiry=expiry, **fields
    )


def exists(task):
    return Task.objects.filter(pk=task.pk).exists()


@pytest.mark.django_db
def test_clean_up_deletes_expired_trees_with_their_subtasks_and_chains():
    top = make()
    children = [make(parent=top, root=top, expired=False) for _ in range(2)]
    follower = make(previous=top, root=top, expired=False)
    other = make(status=Task.STATUS_FAILURE)
    assert clean_up(batch=1) == 5
    assert not any(exists(task) for task in [top, *children, follower, other])


@pytest.mark.django_db
def test_clean_up_keeps_what_has_not_expired_or_is_not_done():
    kept = [
        make(expired=False),
        Task.objects.create(func_name="tests.app.tasks.add", status=DONE, result_expiry=None),
        make(status=Task.STATUS_RUNNING),
        make(status=Task.STATUS_WAITING),
    ]
    young = make(expired=False)
    old_child = make(parent=young, root=young)
    kept += [young, old_child]
    busy = make()
    kept += [busy, make(previous=busy, root=busy, status=ACTIVE, expired=False)]
    assert clean_up() == 0
    assert all(exists(task) for task in kept)


@pytest.mark.django_db
def test_every_link_between_tasks_is_indexed_so_deleting_a_task_scans_no_table():
    # Deleting a row makes the database look up the rows that point at it, one
    # lookup per link (the foreign key's check, Django's SET_NULL or CASCADE).
    # An unindexed link is a scan of the whole table per deleted row: clean_up
    # on a table of millions then deletes a few rows a second.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Task._meta.db_table)
    leading = {c["columns"][0] for c in constraints.values() if c["index"] and c["columns"]}
    links = [
        field.column
        for field in Task._meta.concrete_fields
        if field.is_relation and field.related_model is Task
    ]
    assert len(links) == 5
    assert [column for column in links if column not in leading] == []


@pytest.mark.django_db
def test_deleting_runs_leaves_their_repeating_task():
    repeating = RepeatingTask.schedule("0 3 * * *", "tests.app.tasks.add", (1, 2))
    make(repeating_task=repeating)
    assert clean_up() == 1
    assert RepeatingTask.objects.filter(pk=repeating.pk).exists()


@pytest.mark.django_db
def test_sweep_queues_due_retries_and_rings_for_stale_queued_tasks():
    now = timezone.now()
    retry = make(status=Task.STATUS_RETRY, run_after=now - timedelta(seconds=1))
    stale = make(status=ACTIVE, expired=False)
    Task.objects.filter(pk=stale.pk).update(submitted=now - timedelta(minutes=10))
    fresh = make(status=ACTIVE, expired=False)
    with mock.patch.object(doorbell.doorbell, "ring_rows") as ring:
        assert sweep(older_than=60) == 1
    rung = [task_id for call in ring.call_args_list for task_id, _ in call.args[0]]
    assert sorted(rung, key=str) == sorted([retry.pk, stale.pk], key=str)
    assert fresh.pk not in rung
    assert Task.objects.get(pk=retry.pk).status == ACTIVE


def test_maintenance_tasks_are_registered_under_their_documented_names():
    assert registry.get("cq.tasks.clean_up") is clean_up
    assert registry.get("cq.tasks.sweep") is sweep
    assert registry.get("cq.tasks.feed") is feed
    assert feed.fn is sweep.fn


@pytest.mark.django_db(transaction=True)
def test_the_documented_migration_recipe_schedules_a_working_clean_up():
    state = MigrationLoader(connection).project_state(("cq", "0001_initial"))
    historical = state.apps.get_model("cq", "RepeatingTask")
    schedule_task(historical, "17 3 * * *", "cq.tasks.clean_up")
    expired = make()
    due = RepeatingTask.objects.get().next_run
    [launched] = scheduler.tick(due)
    ran = run_task(launched.pk)
    assert (ran.status, ran.result) == (Task.STATUS_SUCCESS, 1)
    assert not exists(expired)
