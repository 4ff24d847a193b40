"""The fork server of time-limited tasks (cq.forkserver) failing under a
claimed task, in this process: the task is recorded, never left RUNNING
(its worker is alive, so no sweeper would recover it)."""

import os
import signal

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
