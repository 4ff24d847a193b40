"""Prometheus metrics (cq.metrics): active tasks per queue and status, the
oldest waiting age, the last hour's outcomes and durations, worker liveness."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from cq import metrics
from cq.models import Task, WorkerHeartbeat

pytestmark = pytest.mark.django_db


def samples(text):
    """{"name{labels}": value} of the exposition text, without comments."""
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_metrics_count_queues_outcomes_durations_and_workers():
    now = timezone.now()
    for _ in range(3):
        Task.objects.create(
            func_name="a", status="Q", queue="emails", submitted=now - timedelta(seconds=90)
        )
    Task.objects.create(func_name="a", status="R", started=now)
    for seconds in (2, 4):
        Task.objects.create(
            func_name="b",
            status="S",
            started=now - timedelta(minutes=5, seconds=seconds),
            finished=now - timedelta(minutes=5),
        )
    Task.objects.create(
        func_name="b",
        status="F",
        started=now - timedelta(minutes=1),
        finished=now - timedelta(minutes=1),
    )
    Task.objects.create(
        func_name="b",
        status="F",
        started=now - timedelta(hours=3),
        finished=now - timedelta(hours=2),
    )
    WorkerHeartbeat.objects.create(name="w1", seen=now - timedelta(seconds=3))
    WorkerHeartbeat.objects.create(name="w2", seen=now - timedelta(hours=1))

    found = samples(metrics.render(now))

    assert found['cq_tasks{queue="emails",status="queued"}'] == "3"
    assert found['cq_tasks{queue="default",status="running"}'] == "1"
    assert float(found['cq_queue_oldest_waiting_seconds{queue="emails"}']) == pytest.approx(
        90, abs=1
    )
    assert found['cq_tasks_finished_last_hour{queue="default",status="success"}'] == "2"
    assert found['cq_tasks_finished_last_hour{queue="default",status="failure"}'] == "1"
    assert found['cq_task_runs_last_hour{function="b"}'] == "3"
    assert float(found['cq_task_run_seconds_last_hour{function="b"}']) == pytest.approx(6)
    assert float(found['cq_task_longest_run_seconds_last_hour{function="b"}']) == pytest.approx(4)
    assert found['cq_worker_up{worker="w1"}'] == "1"
    assert found['cq_worker_up{worker="w2"}'] == "0"
    assert found["cq_workers_alive"] == "1"


def test_metrics_view_and_command_serve_the_same_text():
    Task.objects.create(func_name="a", status="Q")
    response = metrics.view(RequestFactory().get("/metrics"))
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'cq_tasks{queue="default",status="queued"} 1' in response.content.decode()
    out = StringIO()
    call_command("cq_status", "--format", "prometheus", stdout=out)
    assert "# TYPE cq_tasks gauge" in out.getvalue()
    assert 'cq_tasks{queue="default",status="queued"} 1' in out.getvalue()


def test_label_values_are_escaped():
    Task.objects.create(func_name="a", status="Q", queue='we"ird\\q')
    assert 'cq_tasks{queue="we\\"ird\\\\q",status="queued"} 1' in metrics.render()
