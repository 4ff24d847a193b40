"""`async def` cq tasks inline: CQ_SERIAL and direct calls take the worker's path."""

import pytest
from django.test import TransactionTestCase, override_settings

from cq.live.outbox import outbox
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import run_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_direct_call_of_a_coroutine_task_returns_its_result():
    assert tasks.async_nap(0.01) == 0.01
    assert tasks.async_spawn(2) == "spawned"
    with pytest.raises(ValueError, match="direct"):
        tasks.async_fail("direct")
    assert not Task.objects.exists()


@override_settings(CQ_SERIAL=True)
def test_serial_runs_coroutine_tasks_with_subtasks():
    parent = tasks.async_spawn.delay(2)
    assert (parent.status, parent.result) == (Task.STATUS_SUCCESS, "spawned")
    assert sorted(parent.subtasks.values_list("result", flat=True)) == [0, 2]
    failed = tasks.async_fail.delay("serial")
    assert failed.status == Task.STATUS_FAILURE
    assert "ValueError: serial" in failed.traceback


@pytest.mark.parametrize("serial", [True, False], ids=["serial", "worker path"])
def test_a_coroutine_reports_progress_from_its_event_loop(serial):
    with override_settings(CQ_SERIAL=serial):
        task = tasks.async_count_up.delay(3)
        run_queued()
    outbox.flush()  # a worker stores reports from its outbox thread
    task.refresh_from_db()
    assert task.status == Task.STATUS_SUCCESS, task.error
    assert (task.progress["done"], task.progress["total"]) == (3, 3)


def test_a_coroutine_task_in_the_worker_path_uses_the_async_orm():
    task = tasks.async_write.delay("async orm")
    run_queued()
    task.refresh_from_db()
    assert task.status == Task.STATUS_SUCCESS
    assert Note.objects.get(pk=task.result).text == "async orm"


def test_a_coroutine_chains_a_task_after_itself():
    first = tasks.async_chain.delay(5)
    run_queued()
    first.refresh_from_db()
    [follower] = first.next.all()
    assert (first.status, follower.status, follower.result) == (Task.STATUS_SUCCESS, "S", 15)


class AdelayTests(TransactionTestCase):
    async def test_adelay_queues_from_async_code(self):
        task = await tasks.async_nap.adelay(0)
        self.assertEqual(task.status, Task.STATUS_QUEUED)
        self.assertEqual(await Task.objects.filter(pk=task.pk).acount(), 1)
