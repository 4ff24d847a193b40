"""A worker's slots (cq.slots), driven in this process on the real database."""

import sys
import threading
from types import SimpleNamespace

import pytest

from cq import slots as slots_module
from cq.models import Task
from cq.slots import Slots
from tests.app import tasks
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def waiting(thread):
    """Whether `thread` is blocked waiting (a lock, a join, a condition)."""
    frame = sys._current_frames().get(thread.ident)
    return frame is not None and frame.f_code.co_name in {"wait", "_wait_for_tstate_lock"}


def test_stop_does_not_wait_for_a_slot_that_takes_an_abandoned_task_after_it_began(monkeypatch):
    # revoke(terminate=True) of a task that runs in a slot thread abandons it
    # and stops the slots (cq.cancelling, Worker.replace). Heard between the
    # task's claim and the start of its group, it named a task that no thread
    # ran yet; stop() looked once, joined that thread, and the worker never
    # exited (the flaky test_a_worker_exits_with_the_recycling_status_the_parent_sees).
    claimed, start, task_ends = threading.Event(), threading.Event(), threading.Event()

    def ready_later(self, idle_seconds):
        claimed.set()  # the group is in this thread's hands, not started
        return start.wait(30)

    monkeypatch.setattr(Slots, "_database_ready", ready_later)
    # The task: runs until the test lets it end (a terminated task never does).
    monkeypatch.setattr(slots_module, "run_group", lambda group, observe: task_ends.wait(60))
    slots = Slots(SimpleNamespace(model=Task, name="host:1:slots"), 1, ["default"])
    task = tasks.add.delay(1, 2)
    slots.start()
    slots.wake()
    try:
        assert claimed.wait(30), "the slot claimed the task"
        slots.abandon([task.pk])
        stopper = threading.Thread(target=slots.stop)
        stopper.start()
        wait_until(lambda: waiting(stopper), 10, message="stop() waiting")
        start.set()
        stopper.join(10)
        assert not stopper.is_alive(), "stop() waits for a thread running an abandoned task"
    finally:
        start.set()
        task_ends.set()
        for thread in slots._threads:
            thread.join(30)
