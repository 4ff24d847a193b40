"""`cq_status` tells an operator where tasks are, who runs them, what failed."""

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.faults import free_port
from tests.helpers import channel_layers

pytestmark = pytest.mark.django_db(transaction=True)


def cq_status():
    out = StringIO()
    call_command("cq_status", stdout=out)
    return out.getvalue()


def line_with(text, output):
    [line] = [line for line in output.splitlines() if text in line]
    return line


def test_status_shows_queue_workers_failures_and_channel_depth():
    now = timezone.now()
    tasks.add.delay(1, 2)
    doorbell.flush()
    Task.objects.create(
        func_name=tasks.add.name, status=Task.STATUS_QUEUED, submitted=now - timedelta(minutes=3)
    )
    WorkerHeartbeat.objects.create(name="alive:1:a", seen=now, concurrency=4)
    WorkerHeartbeat.objects.create(name="dead:2:b", seen=now - timedelta(minutes=5))
    for worker in ("alive:1:a", "dead:2:b", "dead:2:b", "vanished:3:c"):
        Task.objects.create(func_name=tasks.add.name, status=Task.STATUS_RUNNING, worker=worker)
    Task.objects.create(
        func_name=tasks.fail.name,
        status=Task.STATUS_FAILURE,
        error="ValueError: boom\nmore",
        finished=now - timedelta(minutes=10),
    )
    Task.objects.create(
        func_name=tasks.add.name,
        status=Task.STATUS_LOST,
        error="WorkerLost: old",
        finished=now - timedelta(hours=2),
    )

    output = cq_status()

    assert re.search(r"Queued +2$", output, re.MULTILINE)
    assert re.search(r"Running +4$", output, re.MULTILINE)
    assert "oldest queued task waits for 3m" in output
    assert "Channel cq-tasks: 1 doorbells waiting (capacity 1000)" in output
    assert "Workers: 1 alive, 2 not" in output
    assert re.search(r"alive:1:a +alive .* ago +running 1/4", output)
    assert re.search(r"dead:2:b +DEAD +last heartbeat +5m 0s ago +running 2/1", output)
    assert re.search(r"vanished:3:c +no heartbeat +running 1", output)
    assert "Failures in the last hour: 1" in output
    assert line_with("tests.app.tasks.fail", output).endswith("ValueError: boom")
    assert "WorkerLost: old" not in output
    assert re.search(
        r"default +waiting +2 +running +4 +oldest waits 3m \d+s, priority 0$", output, re.M
    )


def test_status_shows_each_queue_and_ignores_tasks_not_due_yet():
    tasks.add.delay_args((1, 1), queue="emails", priority=5)
    tasks.add.delay_args((1, 1), queue="emails", priority=-3)
    tasks.add.delay_args((1, 1), countdown=86400)

    output = cq_status()

    assert re.search(
        r"emails +waiting +2 +running +0 +oldest waits \d+s, priority -3..5$", output, re.M
    )
    assert "default" not in line_with("Queues", output)
    assert not re.search(r"^  default ", output, re.M), "a countdown is not waiting"
    assert (
        "oldest queued task waits for 0s" in output or "oldest queued task waits for 1s" in output
    )


def test_status_json_gives_the_same_information_to_scripts():
    now = timezone.now()
    tasks.add.delay(1, 2)
    tasks.add.delay_args((1, 1), queue="emails", priority=5)
    doorbell.flush()
    Task.objects.create(
        func_name=tasks.add.name, status=Task.STATUS_QUEUED, submitted=now - timedelta(minutes=3)
    )
    tasks.add.delay_args((1, 1), countdown=86400)
    WorkerHeartbeat.objects.create(
        name="deaf:1:a", seen=now, concurrency=4, channel_down_since=now - timedelta(seconds=12)
    )
    Task.objects.create(func_name=tasks.add.name, status=Task.STATUS_RUNNING, worker="deaf:1:a")
    Task.objects.create(
        func_name=tasks.fail.name,
        status=Task.STATUS_FAILURE,
        error="ValueError: boom\nmore",
        finished=now - timedelta(minutes=10),
    )

    out = StringIO()
    call_command("cq_status", "--json", stdout=out)
    report = json.loads(out.getvalue())

    assert report["tasks"] == {"pending": 0, "retry": 0, "queued": 4, "running": 1, "waiting": 0}
    assert 180 <= report["oldest_queued_seconds"] < 240, "a countdown is not waiting"
    emails, default = sorted(report["queues"], key=lambda row: row["queue"] != "emails")
    assert emails == {
        "queue": "emails",
        "waiting": 1,
        "running": 0,
        "oldest_seconds": emails["oldest_seconds"],
        "priority_low": 5,
        "priority_high": 5,
    }
    assert (default["queue"], default["waiting"], default["running"]) == ("default", 2, 1)
    assert report["channel"] == {"name": "cq-tasks", "depth": 1, "capacity": 1000, "problem": ""}
    [worker] = report["workers"]
    assert worker["name"] == "deaf:1:a" and worker["alive"] is True
    assert (worker["running"], worker["concurrency"]) == (1, 4)
    assert 12 <= worker["channel_down_seconds"] < 15
    assert worker["last_heartbeat"].endswith("+00:00")
    assert (report["workers_alive"], report["failures_last_hour"]) == (1, 1)
    [failure] = report["recent_failures"]
    assert (failure["func_name"], failure["status"]) == ("tests.app.tasks.fail", "failure")
    assert failure["error"] == "ValueError: boom"


def test_status_json_reports_an_unreachable_channel_as_a_problem():
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CHANNEL_LAYERS=channel_layers(address=nowhere)):
        out = StringIO()
        call_command("cq_status", "--json", stdout=out)
    channel = json.loads(out.getvalue())["channel"]
    assert (channel["depth"], channel["capacity"]) == (None, None)
    assert channel["problem"].startswith("unreachable (")


def test_status_says_when_redis_is_unreachable():
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CHANNEL_LAYERS=channel_layers(address=nowhere)):
        output = cq_status()
    assert "Channel cq-tasks: unreachable (" in output
    assert "Workers: 0 alive, 0 not" in output


def test_status_says_when_a_live_worker_cannot_reach_redis():
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        name="deaf:1:a", seen=now, concurrency=2, channel_down_since=now - timedelta(seconds=12)
    )
    WorkerHeartbeat.objects.create(name="fine:2:b", seen=now, concurrency=2)

    output = cq_status()

    assert re.search(
        r"deaf:1:a +alive .* running 0/2  channel unreachable for 1[23]s$", output, re.MULTILINE
    )
    assert line_with("fine:2:b", output).endswith("running 0/2")
