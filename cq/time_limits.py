"""Time limits: a task past its limit is stopped, whatever it is doing.

A Python thread cannot be stopped from outside: not in `time.sleep`, not in a
blocking socket read, not in a C extension. A process can. So a worker runs a
time-limited task in a child process forked from the slot thread that claimed
it. The child does the whole execution (cq.execution.execute) on database and
Redis connections of its own, records the outcome and exits. The slot thread
waits for it with a deadline (a pidfd: woken by the child's exit, not polling);
past the limit it kills the child (SIGKILL), which drops the child's database
connection: the database rolls back its open transaction, so an atomic task's
writes are gone. The slot then records the attempt through cq.transitions like
any failure: FAILURE with TimeLimitExceeded, or a retry if the task's retry
rules take it.

The fork's pitfalls, and what the child does about them:

- The worker has other threads: they do not exist in the child, and the locks
  they held stay held there. cq.doorbell and cq.waiting start afresh in a child
  (os.register_at_fork); logging reinitialises its own locks.
- The child inherits the slot thread's database connection, whose socket the
  parent still uses: closing it, even implicitly, would say goodbye on the
  parent's session. The child drops it without a word and keeps a reference
  to it, so that no destructor runs until `os._exit`, which runs none.
  Redis clients (redis-py) notice the new pid and open fresh connections.
- The worker's SIGTERM/SIGINT handlers write to its event loop: the child
  ignores both (a stopping worker lets its running tasks finish; the limit
  still holds), and uses SIGUSR1 to learn of a revoke (cq.cancelling).
"""

import ctypes
import logging
import numbers
import os
import select
import signal
import sys
import threading
import time
import warnings

from .conf import settings as cq_settings
from .exceptions import CQError, InvalidTaskOption, TimeLimitExceeded

logger = logging.getLogger(__name__)

# prctl(2) option: the signal a child gets when the thread that forked it ends.
PR_SET_PDEATHSIG = 1

# The revoke of a task that runs in a child reaches it as this signal.
CANCEL_SIGNAL = signal.SIGUSR1

# {task id (str): pid} of the children this process runs tasks in.
_children = {}
_children_lock = threading.Lock()
# Connections inherited from the parent, kept (never closed) until os._exit.
_inherited = []


def check_time_limit(value):
    """A time limit as given to `@task` or `delay_args`: None, or seconds >= 0
    (0: no limit, even when CQ_DEFAULT_TIME_LIMIT sets one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise InvalidTaskOption(f"time_limit must be a number of seconds >= 0, got {value!r}")
    return float(value)


def limit_of(task, task_function):
    """Seconds `task` may run, or None: its call's own limit, else its task's,
    else CQ_DEFAULT_TIME_LIMIT."""
    limit = task.time_limit
    if limit is None and task_function is not None:
        limit = task_function.time_limit
    if limit is None:
        limit = cq_settings.DEFAULT_TIME_LIMIT
    return limit or None


def run_in_child(task, limit, execute, record_failure, observe=None):
    """Run `execute()` (which records the task's outcome) in a child process;
    past `limit` seconds, kill it and `record_failure(exc)`. Returns the
    exception recorded here, if any."""
    began = time.monotonic()
    task_id = str(task.pk)
    pid = _fork(task_id, execute)
    with _children_lock:
        _children[task_id] = pid
    try:
        status = _wait(pid, began + limit)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            exc = TimeLimitExceeded(f"{task.func_name} ran past its time limit of {limit:g}s")
        else:
            exc = _abnormal_exit(task, status)
    finally:
        with _children_lock:
            _children.pop(task_id, None)
    if observe is not None:
        observe(time.monotonic() - began)
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
        pid = _children.get(str(task_id))
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGKILL if terminate else CANCEL_SIGNAL)
        except ProcessLookupError:
            pass  # it just ended
    return True


def _fork(task_id, execute):
    # The revoke signal waits (blocked) until the child has its handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, {CANCEL_SIGNAL})
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns of fork() in a threaded process: the child
            # below touches nothing the other threads may have locked.
            warnings.simplefilter("ignore", DeprecationWarning)
            parent = os.getpid()
            pid = os.fork()
        if pid == 0:
            _child(task_id, execute, parent)  # never returns
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {CANCEL_SIGNAL})
    return pid


def _child(task_id, execute, parent):
    code = 1
    try:
        _die_with(parent)
        _leave_parent_connections()
        _install_child_signals(task_id)
        execute()
        code = 0
    except BaseException:  # noqa: BLE001 - the child's boundary: the parent records it
        logger.exception("task process failed id=%s", task_id)
    finally:
        _exit(code)


def _die_with(parent):
    """Linux: the kernel kills this child when the thread that forked it ends
    (the worker killed, or replaced by execv): no task outlives its worker,
    unsupervised, past its limit."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def _leave_parent_connections():
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        # Kept referenced, so that no destructor closes the parent's socket;
        # the next query opens a connection of the child's own.
        _inherited.append(connection)
        del connections[connection.alias]


def _install_child_signals(task_id):
    from . import cancelling

    signal.set_wakeup_fd(-1)  # the parent's event loop is not ours
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(CANCEL_SIGNAL, lambda signum, frame: cancelling.mark([task_id]))
    # Blocked by the parent around the fork: one sent meanwhile arrives now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {CANCEL_SIGNAL})


def _exit(code):
    from django.db import connections

    from .doorbell import doorbell

    try:
        # Doorbells and announcements the task's outcome rang leave before we go.
        doorbell.flush(cq_settings.REDIS_TIMEOUT)
        connections.close_all()
    except BaseException:  # noqa: BLE001 - leaving anyway
        logger.exception("task process clean-up failed")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed stream must not keep the child
            pass
    os._exit(code)


def _wait(pid, deadline):
    """The child's wait status once it exits, or None if it still runs at `deadline`."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # not Linux >= 5.3: poll instead
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                if pidfd is not None:
                    select.select([pidfd], [], [], remaining)
                else:
                    time.sleep(min(remaining, 0.01))
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if remaining <= 0:
                return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _abnormal_exit(task, status):
    """The error of a child that ended without recording an outcome, or None."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    if code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with status {code}"
    return CQError(f"the process running {task.func_name} {how}")
