"""The fork server of time-limited tasks (cq.forkserver) failing under a
claimed task, in this process: the task is recorded, never left RUNNING
(its worker is alive, so no sweeper would recover it)."""

import os
import signal
import time

import pytest

from cq import forkserver
from cq.execution import claim, run_claimed
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_time_limited_task_whose_fork_server_died_is_recorded_not_left_running(monkeypatch):
    server = forkserver.ForkServer()
    os.kill(server.pid, signal.SIGKILL)
    wait_until(lambda: not server.alive(), timeout=10, message="the fork server to die")
    # As if it died just after get() handed it to the slot.
    monkeypatch.setattr(forkserver, "get", lambda: server)
    task = tasks.record_run.delay_args(("limited",), time_limit=30)

    error = run_claimed(claim(task.pk, "worker:1:test"))

    task.refresh_from_db()
    assert task.status == Task.STATUS_FAILURE
    assert "could not start a process for tests.app.tasks.record_run" in task.error
    assert str(error) in task.error
    assert not Note.objects.filter(text="limited").exists()


def test_a_time_limited_task_whose_fork_server_hangs_is_recorded_and_the_server_replaced(
    monkeypatch,
):
    monkeypatch.setattr(forkserver, "ANSWER_WITHIN", 0.5)
    server = forkserver.ForkServer()
    os.kill(server.pid, signal.SIGSTOP)  # alive, never answering
    monkeypatch.setattr(forkserver, "_server", server)
    task = tasks.record_run.delay_args(("limited",), time_limit=30)

    began = time.monotonic()
    run_claimed(claim(task.pk, "worker:1:test"))

    assert time.monotonic() - began < 5, "the slot waited on a hung fork server"
    task.refresh_from_db()
    assert task.status == Task.STATUS_FAILURE
    assert "could not start a process for tests.app.tasks.record_run" in task.error
    wait_until(lambda: not server.alive(), timeout=10, message="the hung server to be killed")
    replacement = forkserver.get()
    assert replacement is not server, "the next time-limited task gets a new server"
    replacement._discard()
