"""Time limits: a task past its limit is stopped, whatever it is doing.

A Python thread cannot be stopped from outside: not in `time.sleep`, not in a
blocking socket read, not in a C extension. A process can. So a worker runs a
time-limited task in a child process, forked for it by the worker's fork
server (cq.forkserver: a clean copy of the worker made as it started). The
child does the whole execution (cq.execution.execute) on database and Redis
connections of its own, records the outcome and exits. The slot thread that
claimed the task waits for the child's exit with the deadline (a pidfd: woken
by the exit, not by polling); past the limit it kills the child (SIGKILL),
which drops the child's database connection: the database rolls back its open
transaction, so an atomic task's writes are gone. Whatever the child started
goes with it: once the child has ended (past its limit, terminated, or done),
the slot thread stops what is left of its process group (cq.proctree:
SIGTERM, a grace, SIGKILL) before the slot does anything else. It then records
the attempt through cq.transitions like any failure: FAILURE with
TimeLimitExceeded, or a retry if the task's retry rules take it. If the child
recorded its outcome just before the kill, that outcome stands: the guarded
update finds the row no longer RUNNING.
"""

import logging
import os
import select
import signal
import threading
import time

from . import forkserver, proctree
from .conf import settings as cq_settings
from .exceptions import CQError, TimeLimitExceeded

logger = logging.getLogger(__name__)

# {task id (str): (pid, pidfd)} of the children this process's tasks run in.
_children: dict[str, tuple[int, int | None]] = {}
_children_lock = threading.Lock()


def limit_of(task, task_function):
    """Seconds `task` may run, or None: its call's own limit, else its task's,
    else CQ_DEFAULT_TIME_LIMIT."""
    limit = task.time_limit
    if limit is None and task_function is not None:
        limit = task_function.time_limit
    if limit is None:
        limit = cq_settings.DEFAULT_TIME_LIMIT
    return limit or None


def run_in_child(task, limit, record_failure, observe=None):
    """Run the claimed `task` in a child process (cq.forkserver), which records
    its outcome; past `limit` seconds, kill it and `record_failure(exc)`.
    However the child ends, what is left of its process group is stopped.
    Returns the exception recorded here, if any."""
    began = time.monotonic()
    task_id = str(task.pk)
    try:
        pid, pidfd = forkserver.get().spawn(task_id)
    except OSError as error:  # ConnectionError included: the fork server died
        # The task is claimed, and this worker is alive, so no sweeper would
        # ever recover its row: record the attempt here.
        exc = CQError(f"could not start a process for {task.func_name}: {error!r}")
        logger.warning("task not started id=%s name=%s error=%s", task.pk, task.func_name, exc)
        record_failure(exc)
        return exc
    with _children_lock:
        _children[task_id] = (pid, pidfd)
    try:
        if _wait(pid, pidfd, began + limit):
            exc = None
        else:
            # The task first, so that it records nothing after its limit.
            proctree.signal_process(pid, pidfd, signal.SIGKILL)
            _wait(pid, pidfd, None)
            exc = TimeLimitExceeded(f"{task.func_name} ran past its time limit of {limit:g}s")
        # A failure recorded here is recorded once nothing the task started
        # runs; and the slot's next task never shares it with leftovers.
        if proctree.stop_group(pid, pidfd):
            logger.info("task's processes stopped id=%s name=%s", task.pk, task.func_name)
    finally:
        with _children_lock:
            _children.pop(task_id, None)
            if pidfd is not None:
                os.close(pidfd)
    if observe is not None:
        observe(time.monotonic() - began)
    if exc is None and _still_running(task):
        # Killed (OOM, an operator), or crashed before it could record anything.
        exc = CQError(f"the process running {task.func_name} ended without an outcome")
    if exc is not None:
        logger.warning("task stopped id=%s name=%s error=%s", task.pk, task.func_name, exc)
        # A row that moved on meanwhile (revoked) keeps its status: the guarded
        # transitions discard this outcome.
        record_failure(exc)
    return exc


def signal_child(task_id, terminate):
    """Tell the child running `task_id` of its revoke (kill it if `terminate`);
    False if no child of this process runs it."""
    with _children_lock:
        child = _children.get(str(task_id))
        if child is None:
            return False
        # Killed, its slot thread stops the rest of its process group (run_in_child).
        proctree.signal_process(*child, signal.SIGKILL if terminate else forkserver.CANCEL_SIGNAL)
    return True


def _wait(pid, pidfd, deadline):
    """Whether the child ended before `deadline` (None: wait for it). A pidfd
    wakes us at its exit; without one (not Linux), poll."""
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return not _alive(pid, pidfd)
        if pidfd is not None:
            ready, _, _ = select.select([pidfd], [], [], remaining)
            if ready:
                return True
        elif not _alive(pid, None):
            return True
        else:
            time.sleep(0.01 if remaining is None else min(remaining, 0.01))


def _alive(pid, pidfd):
    if pidfd is not None:
        return not select.select([pidfd], [], [], 0)[0]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _still_running(task):
    """Whether the row is still at the attempt the child was to record."""
    model = type(task)
    return model.objects.filter(
        pk=task.pk, status=model.STATUS_RUNNING, retries=task.retries
    ).exists()
