"""One message, at most one task run: the per-message boundary and CQConsumer."""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from django.db.utils import OperationalError
from django.test import override_settings

from cq import consumers
from cq.consumers import CQConsumer, handle_message
from cq.models import Task
from tests.app import tasks

pytestmark = pytest.mark.django_db(transaction=True)

MALFORMED = [
    {"type": "run_task"},
    {"type": "run_task", "task_id": "not-a-uuid"},
    {"type": "run_task", "task_id": 42},
    {"type": "run_task", "task_id": None},
    {"type": "run_task", "task_id": "00000000-0000-0000-0000-000000000000"},
    {"type": "something.else", "task_id": "00000000-0000-0000-0000-000000000000"},
    {"task_id": "00000000-0000-0000-0000-000000000000"},
    "run_task",
    ["run_task"],
    None,
]


@pytest.mark.parametrize("message", MALFORMED, ids=repr)
def test_a_malformed_message_is_logged_and_skipped(message, caplog):
    bystander = tasks.add.delay(1, 1)
    with caplog.at_level(logging.WARNING, logger="cq.consumers"):
        assert handle_message(message) is None
    assert "skipped" in caplog.text
    assert Task.objects.get(pk=bystander.pk).status == Task.STATUS_QUEUED


def test_a_message_runs_its_task():
    task = tasks.add.delay(2, 3)
    ran = handle_message({"type": "run_task", "task_id": str(task.pk)}, worker="w1")
    assert (ran.pk, ran.status, ran.result, ran.worker) == (task.pk, Task.STATUS_SUCCESS, 5, "w1")


def test_a_duplicate_message_runs_nothing():
    task = tasks.add.delay(2, 3)
    message = {"type": "run_task", "task_id": str(task.pk)}
    assert handle_message(message) is not None
    assert handle_message(message) is None


def test_an_error_outside_the_task_is_logged_not_raised(monkeypatch, caplog):
    def broken(task_id, worker):
        raise OperationalError("database went away")

    monkeypatch.setattr(consumers, "run_task", broken)
    task = tasks.add.delay(2, 3)
    assert handle_message({"type": "run_task", "task_id": str(task.pk)}) is None
    assert "database went away" in caplog.text


def test_run_task_is_importable_from_consumers():
    from cq.consumers import run_task
    from cq.execution import run_task as execution_run_task

    assert run_task is execution_run_task


def test_the_consumer_uses_cq_channel_layer():
    with override_settings(CQ_CHANNEL_LAYER="other"):
        assert CQConsumer().channel_layer_alias == "other"


def test_cq_consumer_skips_malformed_messages_and_keeps_running_tasks():
    task = tasks.add.delay(2, 3)

    def status():
        return Task.objects.get(pk=task.pk).status

    async def scenario():
        communicator = ApplicationCommunicator(
            CQConsumer.as_asgi(), {"type": "channel", "channel": "cq-tasks"}
        )
        for message in MALFORMED:
            await communicator.send_input(message)
        await communicator.send_input({"type": "run_task", "task_id": str(task.pk)})
        for _ in range(400):
            if await database_sync_to_async(status)() == Task.STATUS_SUCCESS:
                break
            await asyncio.sleep(0.05)
        alive = not communicator.future.done()
        communicator.future.cancel()
        try:
            await communicator.wait(5)
        except asyncio.CancelledError:
            pass
        return alive

    assert async_to_sync(scenario)(), "the consumer survived every malformed message"
    task.refresh_from_db()
    assert (task.status, task.result) == (Task.STATUS_SUCCESS, 5)
