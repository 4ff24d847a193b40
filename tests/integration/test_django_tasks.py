"""Django's task API on cq (cq.backends.CQBackend), in this process: what a
backend owes Django (enqueue, results, errors, validation, signals), on Django 6's
django.tasks or the django-tasks backport on 5.2. Tasks run as a worker runs
them (tests.helpers.run_queued); tests/e2e/test_django_tasks.py uses real workers."""

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.test import TransactionTestCase, override_settings
from django.utils import timezone

from cq.models import Task
from tests.app import tasks
from tests.helpers import run_queued

pytestmark = [
    pytest.mark.skipif(not settings.DJANGO_TASKS_API, reason="no Django task API installed"),
    pytest.mark.django_db(transaction=True),
]

if settings.DJANGO_TASKS_API:
    from cq.backends import CQBackend
    from cq.djangotasks import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultStatus,
        signals,
    )
    from cq.exceptions import SerializationError
    from tests.app import dtasks

    READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
    SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED


def test_enqueue_stores_a_queued_row_that_names_the_api_and_backend():
    result = dtasks.shout.enqueue("hi")
    row = Task.objects.get(pk=result.id)
    assert (row.func_name, row.args, row.status) == ("tests.app.dtasks.shout", ["hi"], "Q")
    assert (row.backend, row.queue, row.priority) == ("default", "emails", 10)
    assert result.status == READY
    assert result.enqueued_at == row.submitted
    assert (result.started_at, result.finished_at) == (None, None)
    assert (result.attempts, result.errors, result.backend) == (0, [], "default")
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_a_run_task_is_successful_with_its_value_for_get_result():
    result = dtasks.add.enqueue(2, 3)
    run_queued()
    got = dtasks.add.get_result(result.id)
    assert (got.status, got.return_value, got.errors) == (SUCCESSFUL, 5, [])
    assert got.started_at <= got.finished_at
    assert got.last_attempted_at == got.started_at
    assert got.attempts == 1
    result.refresh()
    assert (result.status, result.return_value) == (SUCCESSFUL, 5)


def test_a_raising_task_is_failed_with_its_exception_class_and_traceback():
    result = dtasks.decline.enqueue("card expired")
    run_queued()
    got = dtasks.decline.get_result(result.id)
    assert got.status == FAILED
    (error,) = got.errors
    assert error.exception_class_path == "tests.app.dtasks.PaymentDeclined"
    assert error.exception_class is dtasks.PaymentDeclined
    assert "PaymentDeclined: card expired" in error.traceback
    assert "def decline" in error.traceback or "raise PaymentDeclined" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        _ = got.return_value


def test_a_builtin_exception_is_named_in_builtins():
    result = dtasks.returns_object.enqueue()
    run_queued()
    (error,) = dtasks.returns_object.get_result(result.id).errors
    # Django's rule for a return value: a JSON round trip, or the task fails.
    assert error.exception_class_path == "builtins.TypeError"
    assert "Unsupported type" in error.traceback


def test_arguments_follow_django_json_rules():
    result = dtasks.echo.enqueue((1, "two"), flag=True)
    assert (result.args, result.kwargs) == ([[1, "two"]], {"flag": True})
    with pytest.raises(TypeError):
        dtasks.echo.enqueue(object())
    with pytest.raises(TypeError):  # Django refuses what cq's own API would take
        dtasks.echo.enqueue(timezone.now())
    with pytest.raises(SerializationError, match="NUL"):  # and what no database stores
        dtasks.echo.enqueue("a\x00b")
    assert Task.objects.count() == 1


def test_an_unknown_or_foreign_id_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        dtasks.add.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist):
        dtasks.add.get_result("not-a-uuid")
    with pytest.raises(TaskResultDoesNotExist):  # a row of cq's own API
        dtasks.add.get_backend().get_result(str(tasks.add.delay(1, 1).pk))
    with pytest.raises(TaskResultDoesNotExist):  # a row of another backend alias
        dtasks.add.get_backend().get_result(dtasks.flaky.enqueue("k", 0).id)


def test_a_queue_not_in_queues_is_invalid():
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid"):
        dtasks.add.using(queue_name="nowhere")
    with pytest.raises(InvalidTask, match="priority"):
        dtasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        dtasks.add.using(run_after=timezone.now().replace(tzinfo=None))
    assert not Task.objects.exists()


def test_backend_settings_are_checked():
    with pytest.raises(InvalidTaskBackend, match="QUEUES"):
        CQBackend("bad", {"QUEUES": ["no spaces allowed"]})
    with pytest.raises(InvalidTaskBackend, match="retires"):
        CQBackend("bad", {"OPTIONS": {"retires": 3}})


def test_an_async_task_with_atomic_options_is_invalid():
    tasks_setting = {**settings.TASKS, "atomic": {"BACKEND": "cq.backends.CQBackend"}}
    tasks_setting["atomic"]["OPTIONS"] = {"atomic": True}
    with override_settings(TASKS=tasks_setting):
        with pytest.raises(InvalidTask, match="async def"):
            dtasks.task(backend="atomic")(atomic_coroutine)


async def atomic_coroutine():
    return None


def test_feature_flags_are_all_set():
    backend = dtasks.add.get_backend()
    assert isinstance(backend, CQBackend)
    assert backend.supports_defer and backend.supports_priority
    assert backend.supports_get_result and backend.supports_async_task


def test_run_after_keeps_the_task_waiting():
    result = dtasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    assert run_queued() == 0
    assert dtasks.add.get_result(result.id).status == READY


def test_an_async_django_task_runs():
    result = dtasks.fetch.enqueue(21)
    run_queued()
    assert dtasks.fetch.get_result(result.id).return_value == 42


def test_takes_context_counts_attempts_across_a_retry():
    key = f"flaky-{uuid.uuid4()}"
    result = dtasks.flaky.enqueue(key, 1)
    run_queued()
    got = dtasks.flaky.get_result(result.id)
    assert got.status == SUCCESSFUL
    assert got.return_value == {"attempt": 2, "run": 2, "id": result.id}
    assert got.attempts == 2


def test_a_retry_is_ready_again_with_the_failed_attempt_in_errors():
    from cq.execution import run_task

    key = f"flaky-{uuid.uuid4()}"
    result = dtasks.flaky.enqueue(key, 5)
    run_task(result.id, worker="w1")
    got = dtasks.flaky.get_result(result.id)
    assert (got.status, got.attempts, got.worker_ids) == (READY, 1, ["w1"])
    assert got.errors[0].exception_class_path == "builtins.ConnectionError"


def test_a_revoked_task_is_failed():
    result = dtasks.add.enqueue(1, 1)
    Task.objects.get(pk=result.id).revoke()
    got = dtasks.add.get_result(result.id)
    assert got.status == FAILED
    assert got.errors[0].exception_class_path == "cq.exceptions.TaskRevoked"


@pytest.fixture
def received():
    seen = []

    def receiver(signal_name):
        def receive(sender, task_result, **kwargs):
            seen.append((signal_name, sender, task_result.id, task_result.status))

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    for name, receive in receivers.items():
        getattr(signals, f"task_{name}").connect(receive)
    yield seen
    for name, receive in receivers.items():
        getattr(signals, f"task_{name}").disconnect(receive)


def test_signals_are_sent_with_the_backend_class(received):
    with transaction.atomic():
        ok = dtasks.add.enqueue(1, 2)
        assert received == []  # the enqueue joins the transaction: sent on commit
    bad = dtasks.decline.enqueue("no")
    run_queued()
    assert received == [
        ("enqueued", CQBackend, ok.id, READY),
        ("enqueued", CQBackend, bad.id, READY),
        ("started", CQBackend, ok.id, RUNNING),
        ("finished", CQBackend, ok.id, SUCCESSFUL),
        ("started", CQBackend, bad.id, RUNNING),
        ("finished", CQBackend, bad.id, FAILED),
    ]


def test_cq_tasks_send_no_django_signals(received):
    tasks.add.delay(1, 2)
    tasks.fail.delay()
    run_queued()
    assert received == []


def test_a_revoke_sends_task_finished(received):
    result = dtasks.add.enqueue(1, 1)
    Task.objects.get(pk=result.id).revoke()
    assert received[-1] == ("finished", CQBackend, result.id, FAILED)


@override_settings(CQ_SERIAL=True)
def test_serial_runs_at_enqueue_with_signals_in_order(received):
    result = dtasks.add.enqueue(4, 5)
    assert (result.status, result.return_value) == (SUCCESSFUL, 9)
    assert [name for name, *_ in received] == ["enqueued", "started", "finished"]
    assert dtasks.fetch.enqueue(1).return_value == 2


class AsyncAPITests(TransactionTestCase):
    """aenqueue / aget_result from an async test, as Django runs one."""

    async def test_aenqueue_and_aget_result(self):
        result = await dtasks.add.aenqueue(20, 22)
        self.assertEqual(result.status, READY)
        await sync_to_async(run_queued)()
        got = await dtasks.add.aget_result(result.id)
        self.assertEqual((got.status, got.return_value), (SUCCESSFUL, 42))
        await result.arefresh()
        self.assertEqual(result.return_value, 42)
        with self.assertRaises(TaskResultDoesNotExist):
            await dtasks.add.aget_result(str(uuid.uuid4()))


def test_cq_status_and_wait_see_django_tasks():
    failed = dtasks.decline.enqueue("expired")
    queued = dtasks.shout.enqueue("later")
    run_queued()
    out = StringIO()
    call_command("cq_status", "--json", stdout=out)
    status = json.loads(out.getvalue())
    assert str(failed.id) in json.dumps(status["recent_failures"])
    assert "tests.app.dtasks.decline" in json.dumps(status["recent_failures"])
    row = Task.objects.get(pk=queued.id)
    assert row.status == Task.STATUS_SUCCESS  # run_queued runs every queue
    assert row.wait(timeout=1).result == "LATER"
