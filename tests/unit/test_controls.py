"""Time limits, cancel marks and recycling, without a worker: their options and rules."""

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from cq import TaskCancelled, cancelling, task, time_limits
from cq.exceptions import InvalidTaskOption
from cq.models import Task
from cq.recycling import Recycler
from cq.running import RunningTask
from tests.app import tasks


@pytest.mark.parametrize("value", [-1, "5", True, [1]])
def test_a_bad_time_limit_is_refused_at_the_decorator(value):
    with pytest.raises(InvalidTaskOption, match="time_limit"):
        task("tests.controls.bad_limit", time_limit=value)(lambda cqt: None)


@pytest.mark.parametrize("value", [-0.5, "1", False])
def test_a_bad_time_limit_is_refused_at_the_call(value):
    # Refused before anything is written: no database needed.
    with pytest.raises(InvalidTaskOption, match="time_limit"):
        tasks.add.delay_args((1, 2), time_limit=value)


def test_the_call_s_limit_wins_then_the_task_s_then_the_setting():
    limited, untimed = tasks.spin_forever, tasks.add
    assert time_limits.limit_of(Task(time_limit=5), limited) == 5
    assert time_limits.limit_of(Task(), limited) == 1
    assert time_limits.limit_of(Task(), untimed) is None
    with override_settings(CQ_DEFAULT_TIME_LIMIT=30):
        assert time_limits.limit_of(Task(), untimed) == 30
        assert time_limits.limit_of(Task(), limited) == 1
        # 0 turns the default off for one call.
        assert time_limits.limit_of(Task(time_limit=0), untimed) is None


def test_check_cancelled_raises_once_the_task_is_marked():
    run = RunningTask(Task())
    assert not run.cancelled
    run.check_cancelled()
    cancelling.mark([run.pk])
    assert run.cancelled
    with pytest.raises(TaskCancelled, match=str(run.pk)):
        run.check_cancelled()
    assert not RunningTask(Task()).cancelled, "another task is not cancelled"


def test_a_recycling_worker_claims_no_more_than_it_has_left():
    recycler = Recycler(max_tasks=50)
    assert recycler.budget(handled=0, held=0) == 50
    assert recycler.budget(handled=40, held=6) == 4
    assert recycler.budget(handled=48, held=6) == 0
    assert recycler.reason(49) is None
    assert "max_tasks=50" in recycler.reason(50)
    assert Recycler().budget(10**6, 10) is None


def test_a_worker_over_its_memory_runs_at_least_one_task_per_generation():
    recycler = Recycler(max_memory=1)
    assert recycler.budget(handled=0, held=0) is None
    assert recycler.budget(handled=1, held=0) == 0
    assert "above max_memory=1" in recycler.reason(1)


@pytest.mark.parametrize("option", ["--max-tasks", "--max-memory"])
def test_runworker_refuses_a_recycling_bound_below_one(option):
    with pytest.raises(CommandError, match=f"{option} must be at least 1"):
        call_command("runworker", "cq-tasks", option, "0")
