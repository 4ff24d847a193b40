"""The fork server: a clean process that time-limited tasks are forked from.

Forking a busy worker copies a process in mid-use: threads that do not exist
in the copy, locks they held that stay held there, database connections open
on sockets the worker still uses. SQLite is the worst of it: its in-process
bookkeeping of file locks is copied too, so a child forked while another of
the worker's threads wrote believes the write lock held for ever (measured:
a child forked from a slot thread blocked past its limit in a third of the
runs on SQLite). So a worker forks this server once, as it starts, before its
threads and before any connection of its own, and asks it for a child per
time-limited task (cq.time_limits). The server's copy is clean, and so are the
children it forks from it.

The server answers each request with the child's pid and a pidfd of it (passed
over the socket, SCM_RIGHTS): the slot thread waits on the pidfd for the
child's exit and signals the child through it, never the wrong process. The
kernel reaps the children (SIGCHLD ignored), and kills the server with its
worker and the children with the server (PR_SET_PDEATHSIG); a server whose
worker is gone (its socket closed) reads EOF and exits.
"""

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import threading

from . import proctree
from .conf import settings as cq_settings

logger = logging.getLogger(__name__)

# prctl(2) options: the signal a process gets when the thread that forked it
# ends; orphaned descendants become this process's children, not PID 1's.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The revoke of a task that runs in a child reaches it as this signal (cq.cancelling).
CANCEL_SIGNAL = signal.SIGUSR1
# A fork server learns of its worker's end by this signal (handled: it stops
# its children's groups before it goes).
WORKER_GONE_SIGNAL = signal.SIGUSR2
# Signals a fork server passes on to its children's process groups.
FORWARDED = (signal.SIGTERM, signal.SIGINT)

# Seconds a fork server may take to answer (a fork takes 5-40 ms on a loaded
# 2-core machine): past it, it is taken for hung, killed and replaced.
ANSWER_WITHIN = 10.0

_server = None
_server_lock = threading.Lock()
# Connections inherited from the worker, kept (never closed) until os._exit.
_inherited: list[object] = []
# In a server: {pid: pidfd or None} of the children whose groups may have
# processes left (pruned as they empty).
_children: dict[int, int | None] = {}
# In a child: its own pid (a process it forks without exec is not the task's).
_task_process = None


def get():
    """This process's fork server, started on first use (a worker starts it
    first thing, while it is still clean: `start`)."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            _server = ForkServer()
        return _server


start = get


class ForkServer:
    def __init__(self):
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            _serve(theirs, parent)  # never returns
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()

    def alive(self):
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done == 0

    def spawn(self, task_id):
        """Fork a child that runs the claimed task `task_id`; returns its pid
        and a pidfd of it (None where the platform has no pidfds)."""
        with self._lock:
            try:
                self._socket.settimeout(ANSWER_WITHIN)
                self._socket.sendall(f"{task_id}\n".encode())
                message, fds, _, _ = socket.recv_fds(self._socket, 64, 1)
            except OSError:
                # Hung (stopped, stuck) or broken: a late answer would be read
                # as the next request's, so this server is done.
                self._discard()
                raise
        if not message:
            raise ConnectionError("the fork server is gone")
        return int(message), (fds[0] if fds else None)

    def _discard(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._socket.close()


# ---- in the server


def _serve(sock, parent):
    try:
        signal.signal(WORKER_GONE_SIGNAL, _worker_gone)
        die_with(parent, WORKER_GONE_SIGNAL)
        _leave_inherited_connections()
        for signum in FORWARDED:
            signal.signal(signum, _forward)  # it goes with its worker, not by these
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        # A revoke sent before a child has its handler waits until it has one.
        signal.pthread_sigmask(signal.SIG_BLOCK, {CANCEL_SIGNAL})
        # Objects moved out of the collector's reach: a child's collections
        # would otherwise touch, and so copy, every page it shares with us.
        gc.freeze()
        requests = sock.makefile("rb")
        for line in requests:
            _fork_child(sock, line.decode().strip())
    except BaseException:  # noqa: BLE001 - the server's boundary
        logger.exception("fork server failed")
    _worker_gone()


def _fork_child(sock, task_id):
    server = os.getpid()
    _prune_children()
    # Blocked across the fork: a forwarded signal that comes meanwhile waits
    # until the child has its own handlers, and here until it is a child we know.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        pid = os.fork()
        if pid == 0:
            sock.close()
            _run_child(task_id, server)  # never returns
        proctree.lead_own_group(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None  # no pidfds, or it ended already (its row tells)
        _children[pid] = pidfd
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    socket.send_fds(sock, [str(pid).encode()], [pidfd] if pidfd is not None else [])


def _prune_children():
    for pid, pidfd in list(_children.items()):
        if not proctree.signal_group(pid, pidfd, 0):
            del _children[pid]
            if pidfd is not None:
                os.close(pidfd)


def _forward(signum, frame):
    """A signal to the worker's process group reached the server: on to the
    children's groups, where it would have gone had they stayed in it."""
    for pid, pidfd in list(_children.items()):
        try:
            proctree.signal_group(pid, pidfd, signum)
        except OSError:  # noqa: PERF203 - raised here, it would end the server's loop
            logger.exception("signal not passed on pgid=%s", pid)


def _worker_gone(signum=None, frame=None):
    """The worker is gone: nobody will watch the tasks or record their ends,
    so the tasks' processes and all they started are killed, and the server exits."""
    try:
        for pid, pidfd in list(_children.items()):
            proctree.signal_group(pid, pidfd, signal.SIGKILL)
    finally:
        os._exit(0)


# ---- in a child


def _run_child(task_id, server):
    code = 1
    try:
        # First, before anything that could start a process.
        proctree.lead_own_group()
        die_with(server)
        _leave_server_state()
        _install_child_signals(task_id)
        _execute(task_id)
        code = 0
    except BaseException:  # noqa: BLE001 - the child's boundary: its worker records it
        logger.exception("task process failed id=%s", task_id)
    finally:
        _exit(code)


def _execute(task_id):
    from .execution import execute
    from .models import Task

    task = Task.objects.filter(pk=task_id, status=Task.STATUS_RUNNING).first()
    if task is not None:  # else revoked since the claim: nothing to run
        execute(task)


def _leave_server_state():
    """The pidfds of the other children are the server's, not this task's."""
    for pidfd in _children.values():
        if pidfd is not None:
            os.close(pidfd)
    _children.clear()


def _install_child_signals(task_id):
    """A task's signals, not the server's: ignored dispositions and a blocked
    mask survive `exec`, and every program the task starts would inherit them
    (a `Popen.terminate()` that does nothing). Handlers do not survive it."""
    from . import cancelling

    global _task_process
    _task_process = os.getpid()
    for signum in FORWARDED:
        signal.signal(signum, _on_stop_signal)
    signal.signal(WORKER_GONE_SIGNAL, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the task may run subprocesses
    signal.signal(CANCEL_SIGNAL, lambda signum, frame: cancelling.mark([task_id]))
    # Nothing stays blocked: a CANCEL_SIGNAL sent meanwhile arrives now.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _on_stop_signal(signum, frame):
    """SIGTERM/SIGINT in a task process: its task runs on, as tasks do while
    their worker drains (systemd's stop sends SIGTERM to every process of the
    service, this one included). A time limit or a terminate stops it with
    SIGKILL (cq.time_limits). A process the task forked without exec
    (multiprocessing) is not the task: it gets the signal's default."""
    if os.getpid() != _task_process:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def die_with(parent, signum=signal.SIGKILL):
    """Linux: the kernel sends this process `signum` (by default: kills it)
    when the thread that forked it ends: no task outlives its worker,
    unwatched, past its limit."""
    if not _prctl(PR_SET_PDEATHSIG, signum):
        return  # not Linux
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def _prctl(option, value):
    """prctl(2); False where there is none (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value)
    except (OSError, AttributeError):
        return False
    return True


def _leave_inherited_connections():
    """Drop the database connections copied from the worker without a word:
    closing one would end the worker's session on the socket they share."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        # Kept referenced, so that no destructor runs until os._exit.
        _inherited.append(connection)
        del connections[connection.alias]


def _exit(code):
    from django.db import connections

    from .doorbell import doorbell
    from .live.outbox import outbox

    try:
        # The task's last progress and live events, then the doorbells and
        # announcements its outcome rang, leave before we go (os._exit runs
        # no atexit hook).
        outbox.flush(cq_settings.REDIS_TIMEOUT)
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
