"""What a real `runworker cq-tasks` logs: INFO lines with times when the project
sets no logging for cq, the same under the quick start's LOGGING, printed once."""

import re

import pytest

from cq.models import Task
from tests.app import tasks

pytestmark = pytest.mark.slow

# e.g. "2026-11-25 19:47:38,123 INFO cq.worker worker started name=..."
TIMESTAMPED = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO "


def burst_output(start_worker, logging_choice):
    task = tasks.add.delay(2, 3)
    worker = start_worker(
        "--burst",
        env={"DJANGO_SETTINGS_MODULE": "tests.settings_logging", "CQ_TEST_LOGGING": logging_choice},
    )
    assert worker.wait(60) == 0, worker.output()
    task.refresh_from_db()
    assert task.status == Task.STATUS_SUCCESS
    return worker.output(), task


def lines(output, logger, message):
    return re.findall(f"{TIMESTAMPED}{logger} {message}", output, re.MULTILINE)


@pytest.mark.parametrize("logging_choice", ["django", "quickstart"])
def test_the_worker_logs_info_lines_with_times_once(start_worker, logging_choice):
    output, task = burst_output(start_worker, logging_choice)
    assert len(lines(output, "cq.worker", "worker started name=")) == 1, output
    assert len(lines(output, "cq.completion", f"task id={task.pk} .*status=SUCCESS")) == 1, output
    assert len(lines(output, "cq.worker", "worker stopped name=")) == 1, output


def test_a_project_logging_at_warning_keeps_the_worker_s_info_lines_out(start_worker):
    # tests.settings: a root handler at WARNING, which the worker respects.
    task = tasks.add.delay(2, 3)
    worker = start_worker("--burst")
    assert worker.wait(60) == 0
    output = worker.output()
    assert "cq 0." in output, "the banner is printed whatever LOGGING says"
    assert "worker started" not in output and f"task id={task.pk}" not in output
