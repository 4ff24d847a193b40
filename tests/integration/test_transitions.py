"""cq.transitions owns every status change, and sends cq's signals from there."""

import ast
from pathlib import Path

import pytest
from django.db import transaction

import cq
from cq import signals
from cq.execution import run_task
from cq.models import Task
from tests.app import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received():
    """(signal name, task id, kwargs) of every cq signal sent while the test runs."""
    seen = []

    def receiver(signal_name):
        def receive(sender, task_id, **kwargs):
            assert sender is Task
            kwargs.pop("signal")
            seen.append((signal_name, task_id, kwargs))

        return receive

    receivers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    for name, receive in receivers.items():
        getattr(signals, f"task_{name}").connect(receive)
    yield seen
    for name, receive in receivers.items():
        getattr(signals, f"task_{name}").disconnect(receive)


def test_a_task_sends_enqueued_started_and_finished(received):
    task = tasks.add.delay(1, 2)
    run_task(task.pk)
    assert received == [
        ("enqueued", task.pk, {}),
        ("started", task.pk, {}),
        ("finished", task.pk, {"status": Task.Status.SUCCESS}),
    ]


def test_enqueued_waits_for_the_commit_and_is_not_sent_on_rollback(received):
    with transaction.atomic():
        task = tasks.add.delay(1, 2)
        assert received == []
    assert received == [("enqueued", task.pk, {})]
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.delay(3, 4)
        raise RuntimeError("rolled back")
    assert len(received) == 1


def test_a_failure_and_a_revoke_are_finished_too(received):
    failed = tasks.fail.delay()
    run_task(failed.pk)
    pending = tasks.add.delay_args((1, 2), submit=False)
    pending.revoke()
    finished = [(pk, kwargs["status"]) for name, pk, kwargs in received if name == "finished"]
    assert finished == [(failed.pk, Task.Status.FAILURE), (pending.pk, Task.Status.REVOKED)]


def test_a_receiver_that_raises_never_changes_the_outcome(caplog):
    def broken(sender, **kwargs):
        raise ValueError("receiver bug")

    signals.task_finished.connect(broken)
    signals.task_started.connect(broken)
    try:
        task = tasks.add.delay(1, 2)
        run_task(task.pk)
    finally:
        signals.task_finished.disconnect(broken)
        signals.task_started.disconnect(broken)
    task.refresh_from_db()
    assert (task.status, task.result) == (Task.Status.SUCCESS, 3)
    assert "signal receiver failed" in caplog.text


def test_statuses_read_as_names_and_store_django_cqs_letters():
    assert Task.Status.QUEUED == Task.STATUS_QUEUED == "Q"
    assert Task.Status.REVOKED.label == "Revoked"
    task = tasks.add.delay(1, 2)
    assert Task.objects.filter(pk=task.pk, status="Q").exists()


def test_no_module_but_transitions_writes_a_status():
    """One owner: an UPDATE or a save that sets `status` appears nowhere else."""
    package = Path(cq.__file__).parent
    writers = []
    for path in package.rglob("*.py"):
        if path.name == "transitions.py" or "migrations" in path.parts or "bench" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") in ("update", "create", "bulk_update")
                and any(keyword.arg == "status" for keyword in node.keywords)
            ):
                writers.append(f"{path.name}:{node.lineno}")
    assert writers == []
