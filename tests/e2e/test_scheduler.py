"""Countdowns, run_after and a repeating task in real worker processes
(tests/integration/test_scheduler.py holds the rest)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cq.models import RepeatingTask, Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import wait_until


def test_a_countdown_runs_in_a_real_worker_when_due_and_not_before(start_worker):
    start_worker()
    task = tasks.record_run.delay_args(("counted down",), countdown=2)
    due_at = task.run_after
    task.wait(30)
    assert task.status == Task.STATUS_SUCCESS, task.error
    assert task.started >= due_at
    assert Note.objects.filter(text="counted down").count() == 1


def test_run_after_runs_in_a_real_worker(start_worker):
    start_worker()
    due_at = timezone.now() + timedelta(seconds=2)
    task = tasks.record_run.delay_args(("at a time",), run_after=due_at)
    task.wait(30)
    assert task.status == Task.STATUS_SUCCESS, task.error
    assert task.started >= due_at


# ---- three real workers, one `* * * * *`, a little more than a minute


@pytest.mark.slow
def test_three_workers_run_an_every_minute_task_once_per_minute(start_worker):
    workers = [start_worker() for _ in range(3)]
    wait_until(
        lambda: WorkerHeartbeat.objects.count() == 3, timeout=60, message="three worker heartbeats"
    )
    task = RepeatingTask.schedule("* * * * *", tasks.record_run, ("minutely",))
    first = task.next_run
    # Two minute boundaries. Once next_run has moved past the second, no
    # worker can launch either occurrence again: each launch is a
    # compare-and-set from the next_run it read. So wait for that, not a
    # fixed time; the deadline is a minute past the second boundary.
    third = first + timedelta(minutes=2)
    wait_until(
        lambda: RepeatingTask.objects.get(pk=task.pk).next_run >= third,
        timeout=(third - timezone.now()).total_seconds() + 60,
        interval=0.5,
        message="both occurrences launched",
    )
    runs = list(Task.objects.filter(repeating_task=task).order_by("submitted"))
    task.refresh_from_db()
    RepeatingTask.objects.filter(pk=task.pk).update(enabled=False)
    assert len(runs) == 2, [worker.output()[-3000:] for worker in workers]
    assert first <= runs[0].submitted < first + timedelta(minutes=1) <= runs[1].submitted
    assert task.next_run == third
    wait_until(
        lambda: Task.objects.filter(repeating_task=task, status=Task.STATUS_SUCCESS).count() == 2,
        timeout=60,
        message="both runs to finish",
    )
    assert Note.objects.filter(text="minutely").count() == 2
