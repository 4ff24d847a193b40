"""Django's task API on real `runworker cq-tasks` processes: a project that
writes only Django's `@task` and `.enqueue()` (tests/app/dtasks.py imports no
cq) gets its tasks run by cq's worker, on Django 6 and on 5.2 with the backport."""

import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from cq.models import Task, WorkerHeartbeat
from tests.app.models import Note
from tests.helpers import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not settings.DJANGO_TASKS_API, reason="no Django task API installed"),
]

if settings.DJANGO_TASKS_API:
    from cq.djangotasks import TaskResultStatus
    from tests.app import dtasks


def finished(task, result, timeout=60):
    wait_until(
        lambda: task.get_result(result.id).is_finished,
        timeout=timeout,
        message=f"{task.name} finished",
    )
    return task.get_result(result.id)


def test_a_django_task_runs_on_the_worker_with_its_result(start_worker):
    start_worker("--queues", "default,emails")
    ok = dtasks.add.enqueue(2, 3)
    loud = dtasks.shout.enqueue("hello")
    bad = dtasks.decline.enqueue("card expired")
    coroutine = dtasks.fetch.enqueue(21)
    got = finished(dtasks.add, ok)
    worker = WorkerHeartbeat.objects.get().name
    assert (got.status, got.return_value, got.worker_ids) == (
        TaskResultStatus.SUCCESSFUL,
        5,
        [worker],
    )
    assert finished(dtasks.shout, loud).return_value == "HELLO"
    assert finished(dtasks.fetch, coroutine).return_value == 42
    failed = finished(dtasks.decline, bad)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "tests.app.dtasks.PaymentDeclined"
    # cq's own tools work on these rows too.
    row = Task.objects.get(pk=ok.id).wait(timeout=5)
    assert (row.status, row.result, row.backend) == (Task.STATUS_SUCCESS, 5, "default")


def test_run_after_is_respected(start_worker):
    start_worker()
    when = timezone.now() + timedelta(seconds=3)
    result = dtasks.add.using(run_after=when).enqueue(1, 1)
    time.sleep(1.5)
    assert dtasks.add.get_result(result.id).status == TaskResultStatus.READY
    got = finished(dtasks.add, result)
    assert got.status == TaskResultStatus.SUCCESSFUL
    assert got.started_at >= when


def test_priorities_run_highest_first(start_worker):
    priorities = [0, -50, 100, 10, -100, 50, 10]
    results = [dtasks.record.using(priority=p).enqueue(f"p{p}") for p in priorities]
    start_worker("--concurrency", "1")
    for result in results:
        finished(dtasks.record, result)
    ran = list(Note.objects.order_by("pk").values_list("text", flat=True))
    assert ran == [f"p{p}" for p in sorted(priorities, reverse=True)]


def test_takes_context_attempt_counts_across_a_retry_on_the_worker(start_worker):
    start_worker()
    result = dtasks.flaky.enqueue(f"flaky-{uuid.uuid4()}", 1)
    got = finished(dtasks.flaky, result)
    assert got.return_value["attempt"] == 2
    assert got.attempts == 2
    assert got.worker_ids[-1] == WorkerHeartbeat.objects.get().name


def test_a_worker_of_other_queues_leaves_the_task(start_worker):
    start_worker("--queues", "default")
    loud = dtasks.shout.enqueue("later")
    quick = dtasks.add.enqueue(1, 2)
    assert finished(dtasks.add, quick).return_value == 3
    assert dtasks.shout.get_result(loud.id).status == TaskResultStatus.READY


def test_a_task_outside_the_tasks_modules_runs_too(start_worker):
    from tests.app import dtasks_elsewhere

    start_worker()
    result = dtasks_elsewhere.triple.enqueue(3)
    assert finished(dtasks_elsewhere.triple, result).return_value == 9
