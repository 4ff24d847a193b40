"""What a time-limited task starts is stopped with it (cq.proctree, cq.forkserver).

Each task here starts `sleep 300` with subprocess.Popen and says its pid in the
cache; the tests then look at that program in /proc. The deadlines are
generous (10-30 s) because the machine is shared; the fixed part of each bound
is the grace (cq.proctree.GRACE), and `sleep` goes at its first SIGTERM."""

import os
import signal
import time

import pytest
from django.core.cache import cache

from cq.models import Task
from tests.app import tasks
from tests.helpers import alive, refreshed, wait_until

# Seconds we allow a stopped program to be gone: a grace of 2 s, and a loaded machine.
GONE_WITHIN = 10


@pytest.fixture
def program_of():
    """`program_of(task)`: the pid of the program the task started, once it
    did; any still running at the end is killed, so a failing test leaves
    no `sleep 300` behind."""
    pids = []

    def started(task):
        pid = wait_until(lambda: cache.get(f"program:{task.pk}"), 30, message="the program started")
        pids.append(pid)
        return pid

    yield started
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def finished(task):
    row = refreshed(task)
    return row if row.is_done else None


def bits(*signums):
    return sum(1 << (signum - 1) for signum in signums)


def test_a_program_a_task_started_is_stopped_at_its_time_limit(start_worker, program_of):
    start_worker()
    task = tasks.run_program.delay_args(time_limit=1)
    program = program_of(task)
    row = wait_until(lambda: finished(task), 30, message="the task stopped at its limit")
    assert row.status == Task.STATUS_FAILURE
    assert row.error.startswith("TimeLimitExceeded:"), row.error
    seconds = (row.finished - row.started).total_seconds()
    print(f"limit 1s, program stopped, failure recorded {seconds:.3f}s after the claim")
    # Stopped before the failure was recorded: gone by now, not re-parented.
    assert not alive(program)


def test_a_program_a_limited_task_starts_has_default_signals(start_worker, program_of):
    start_worker()
    task = tasks.program_signals.delay()
    program_of(task)
    row = wait_until(lambda: finished(task), 60, message="the task done")
    assert row.status == Task.STATUS_SUCCESS, row.error
    # Neither ignored nor blocked (the fork server ignores SIGTERM/SIGINT and
    # blocks SIGUSR1: an exec'd program inherits both), so terminate() works.
    assert row.result["ignored"] & bits(signal.SIGTERM, signal.SIGINT) == 0, row.result
    assert row.result["blocked"] == 0, row.result
    assert row.result["returncode"] == -signal.SIGTERM, row.result


def test_terminate_stops_the_programs_a_task_started(start_worker, program_of):
    worker = start_worker()
    task = tasks.run_program.delay_args(time_limit=600)
    program = program_of(task)
    began = time.monotonic()
    task.revoke(terminate=True)
    wait_until(
        lambda: not alive(program), GONE_WITHIN, message="the program stopped", interval=0.005
    )
    print(f"terminate: program gone {time.monotonic() - began:.3f}s after revoke()")
    assert refreshed(task).status == Task.STATUS_REVOKED
    assert tasks.add.delay(1, 2).wait(timeout=10).result == 3
    assert worker.process.poll() is None


def test_a_program_a_task_leaves_running_is_stopped_when_the_task_ends(start_worker, program_of):
    start_worker()
    task = tasks.leave_program.delay()
    program = program_of(task)
    row = wait_until(lambda: finished(task), 30, message="the task done")
    assert (row.status, row.result) == (Task.STATUS_SUCCESS, program)
    wait_until(lambda: not alive(program), GONE_WITHIN, message="the program stopped")


def test_sigterm_to_the_workers_process_group_reaches_its_tasks_programs(start_worker, program_of):
    # A terminal's Ctrl-C, `kill -TERM -<pgid>`: the whole group is signalled.
    worker = start_worker(own_group=True)
    task = tasks.run_program.delay_args(time_limit=600)
    program = program_of(task)
    os.killpg(worker.pid, signal.SIGTERM)
    # The program ends by the signal as if it were still in the worker's group;
    # the task's own process, told too, finishes its task (a drain) and
    # records the program's end, and the worker exits 0.
    assert worker.wait(30) == 0, worker.output()
    row = refreshed(task)
    assert (row.status, row.result) == (Task.STATUS_SUCCESS, -signal.SIGTERM), row.error
    assert not alive(program)


def test_sigterm_to_the_worker_alone_lets_a_limited_task_and_its_program_finish(
    start_worker, program_of
):
    # `docker stop`, `kill <pid>`: a drain, as before programs had groups.
    worker = start_worker()
    task = tasks.run_program.delay_args((2,), time_limit=600)
    program_of(task)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    row = refreshed(task)
    assert (row.status, row.result) == (Task.STATUS_SUCCESS, 0), row.error


def test_a_killed_worker_leaves_no_program_of_its_tasks_behind(start_worker, program_of):
    worker = start_worker()
    task = tasks.run_program.delay_args(time_limit=600)
    program = program_of(task)
    worker.kill()
    wait_until(lambda: not alive(program), GONE_WITHIN, message="the program gone with its worker")
