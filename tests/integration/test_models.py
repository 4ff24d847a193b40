"""Creating, submitting, revoking and waiting for Task rows."""

import time
from datetime import timedelta

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cq.exceptions import (
    DuplicateSubmitError,
    InvalidTaskOption,
    UnknownTaskError,
    WaitTimeout,
)
from cq.execution import run_task
from cq.models import Task, delay
from tests.app import tasks
from tests.helpers import channel_depth, channel_key, run_queued

pytestmark = pytest.mark.django_db(transaction=True)


# ---- delay


def test_delay_saves_a_queued_task_and_rings(redis_client):
    task = tasks.add.delay(2, b=3)
    row = Task.objects.get(pk=task.pk)
    assert (row.func_name, row.args, row.kwargs, row.status) == (
        "tests.app.tasks.add",
        [2],
        {"b": 3},
        Task.STATUS_QUEUED,
    )
    assert channel_depth(redis_client) == 1


def test_delay_function_form_takes_a_task_or_its_name():
    by_function = delay(tasks.add, (1, 2))
    by_name = delay("tests.app.tasks.add", args=[1], kwargs={"b": 2})
    assert by_function.func_name == by_name.func_name == "tests.app.tasks.add"
    run_queued()
    by_function.refresh_from_db()
    by_name.refresh_from_db()
    assert by_function.result == by_name.result == 3


def test_delay_args_sets_queue_and_priority_per_call_and_rings_that_queue(redis_client):
    task = tasks.add.delay_args((1, 2), queue="emails", priority=7)
    assert (task.queue, task.priority) == ("emails", 7)
    assert Task.objects.filter(queue="emails", priority=7).count() == 1
    assert channel_depth(redis_client) == 0, "not on the default queue's channel"
    assert redis_client.zcard(channel_key() + ".emails") == 1


@pytest.mark.parametrize("options", [{"queue": "no spaces"}, {"priority": 500}, {"priority": "1"}])
def test_bad_queue_or_priority_per_call_raise_and_write_no_row(options):
    with pytest.raises(InvalidTaskOption):
        tasks.add.delay_args((1, 2), **options)
    assert not Task.objects.exists()


def test_delay_args_takes_options():
    task = tasks.add.delay_args((1, 2), result_ttl=60)
    assert task.result_ttl == 60


@pytest.mark.parametrize("args", [(object(),), (float("nan"),), ({1, 2},)])
def test_non_json_arguments_raise_type_error_and_write_no_row(args):
    with pytest.raises(TypeError, match="JSON"):
        tasks.echo.delay(*args)
    with pytest.raises(TypeError, match="JSON"):
        tasks.echo.delay_args((), {"value": args[0]})
    assert not Task.objects.exists()


def test_json_encoder_types_are_accepted():
    now = timezone.now()
    task = tasks.echo.delay(now)
    assert Task.objects.get(pk=task.pk).args == [DjangoJSONEncoder().default(now)]


def test_an_unknown_task_name_is_refused_and_writes_no_row():
    with pytest.raises(UnknownTaskError, match="'no.such.task'"):
        delay("no.such.task")
    with pytest.raises(UnknownTaskError, match="not a @task"):
        delay(lambda cqt: None)
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: delay(tasks.add, "12"), TypeError),
        (lambda: delay(tasks.add, (), ["a"]), TypeError),
        (lambda: delay(tasks.add, (), retries=3), TypeError),
        (lambda: delay(tasks.add, (), countdown=-1), InvalidTaskOption),
        (
            lambda: delay(tasks.add, (), run_after=timezone.now().replace(tzinfo=None)),
            InvalidTaskOption,
        ),
    ],
)
def test_bad_delay_options_are_refused(call, error):
    with pytest.raises(error):
        call()
    assert not Task.objects.exists()


def test_countdown_sets_run_after_and_rings_nothing(redis_client):
    before = timezone.now()
    task = tasks.add.delay_args((1, 2), countdown=30)
    assert task.run_after >= before + timedelta(seconds=30)
    assert channel_depth(redis_client) == 0


# ---- the doorbell rings after commit


def test_nothing_rings_before_commit_and_the_doorbell_rings_after(redis_client):
    with transaction.atomic():
        tasks.add.delay(1, 2)
        assert channel_depth(redis_client) == 0
    assert channel_depth(redis_client) == 1


def test_a_rolled_back_delay_rings_nothing_and_leaves_no_row(redis_client):
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.delay(1, 2)
        raise RuntimeError("roll back")
    assert channel_depth(redis_client) == 0
    assert not Task.objects.exists()


# ---- submit


def test_delay_args_without_submit_is_pending_and_silent(redis_client):
    task = tasks.add.delay_args((2,), submit=False)
    assert Task.objects.get(pk=task.pk).status == Task.STATUS_PENDING
    assert channel_depth(redis_client) == 0
    assert run_queued() == 0


def test_submit_prepends_arguments_and_queues(redis_client):
    task = tasks.add.delay_args((2,), submit=False)
    task.submit(40)
    assert Task.objects.get(pk=task.pk).args == [40, 2]
    assert channel_depth(redis_client) == 1
    run_queued()
    task.refresh_from_db()
    assert task.result == 42


def test_submitting_twice_raises_duplicate_submit_error():
    task = tasks.add.delay_args((1, 2), submit=False)
    task.submit()
    with pytest.raises(DuplicateSubmitError):
        task.submit()
    with pytest.raises(DuplicateSubmitError):
        Task.objects.get(pk=task.pk).submit()


def test_submitting_a_revoked_task_does_nothing(redis_client):
    task = tasks.add.delay_args((1, 2), submit=False)
    task.revoke()
    assert task.submit().status == Task.STATUS_REVOKED
    assert Task.objects.get(pk=task.pk).status == Task.STATUS_REVOKED
    assert channel_depth(redis_client) == 0


# ---- querying and waiting


def test_active_lists_tasks_not_final_yet():
    queued = tasks.add.delay(1, 1)
    pending = tasks.add.delay_args((1, 1), submit=False)
    done = tasks.add.delay(2, 2)
    run_task(done.pk)
    assert set(Task.objects.active()) == {queued, pending}
    assert set(Task.objects.done()) == {Task.objects.get(pk=done.pk)}


def test_status_sets_cover_every_status():
    assert Task.STATUS_DONE | Task.STATUS_ACTIVE == {code for code, _ in Task.STATUS_CHOICES}
    assert not Task.STATUS_DONE & Task.STATUS_ACTIVE
    assert Task.STATUS_ERROR < Task.STATUS_DONE


def test_wait_returns_after_the_timeout_without_hammering_the_database():
    task = tasks.add.delay(1, 1)
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        waited = task.wait(timeout=1.0)
    elapsed = time.monotonic() - started
    assert waited is task and task.status == Task.STATUS_QUEUED
    assert 1.0 <= elapsed < 10
    assert len(queries) < 40


def test_wait_returns_the_refreshed_task_once_done():
    task = tasks.add.delay(1, 1)
    run_task(task.pk)
    assert task.wait(timeout=5).result == 2


def test_wait_raises_on_timeout_when_asked_naming_the_task_and_its_status():
    task = tasks.add.delay(1, 1)
    with pytest.raises(WaitTimeout, match=f"task {task.pk} .* status Queued") as raised:
        task.wait(timeout=0.2, raise_on_timeout=True)
    assert isinstance(raised.value, TimeoutError)
    assert task.status == Task.STATUS_QUEUED


def test_wait_with_raise_on_timeout_returns_a_done_task():
    task = tasks.add.delay(1, 1)
    run_task(task.pk)
    assert task.wait(timeout=5, raise_on_timeout=True).result == 2


# ---- revoke


def test_revoke_cascades_to_subtasks_and_chains():
    root = tasks.add.delay(1, 2)
    child = tasks.add.delay_args((1, 1), parent=root)
    grandchild = tasks.add.delay_args((2, 2), parent=child)
    follower = root.chain(tasks.add, (1,))
    child_follower = child.chain(tasks.add, (1,))
    unrelated = tasks.add.delay(5, 5)
    root.revoke()
    tree = [root, child, grandchild, follower, child_follower]
    assert {Task.objects.get(pk=t.pk).status for t in tree} == {Task.STATUS_REVOKED}
    assert run_queued() == 1, "only the unrelated task runs"
    assert Task.objects.get(pk=unrelated.pk).status == Task.STATUS_SUCCESS


def test_revoking_a_finished_task_keeps_its_status():
    task = tasks.add.delay(1, 2)
    run_queued()
    task.revoke()
    assert task.status == Task.STATUS_SUCCESS


def test_the_active_index_covers_exactly_the_active_statuses():
    index = next(i for i in Task._meta.indexes if i.name == "cq_task_active")
    ((lookup, statuses),) = index.condition.children
    assert lookup == "status__in" and set(statuses) == Task.STATUS_ACTIVE
