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

from .conf import settings as cq_settings

logger = logging.getLogger(__name__)

# prctl(2) option: the signal a process gets when the thread that forked it ends.
PR_SET_PDEATHSIG = 1
# The revoke of a task that runs in a child reaches it as this signal (cq.cancelling).
CANCEL_SIGNAL = signal.SIGUSR1

# Seconds a fork server may take to answer (a fork takes 5-40 ms on a loaded
# 2-core machine): past it, it is taken for hung, killed and replaced.
ANSWER_WITHIN = 10.0

_server = None
_server_lock = threading.Lock()
# Connections inherited from the worker, kept (never closed) until os._exit.
_inherited: list[object] = []


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
        die_with(parent)
        _leave_inherited_connections()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it goes with its worker
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
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
    os._exit(0)


def _fork_child(sock, task_id):
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        sock.close()
        _run_child(task_id, server)  # never returns
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # no pidfds, or it ended already (its row tells)
    socket.send_fds(sock, [str(pid).encode()], [pidfd] if pidfd is not None else [])
    if pidfd is not None:
        os.close(pidfd)


# ---- in a child


def _run_child(task_id, server):
    code = 1
    try:
        die_with(server)
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


def _install_child_signals(task_id):
    from . import cancelling

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the task may run subprocesses
    signal.signal(CANCEL_SIGNAL, lambda signum, frame: cancelling.mark([task_id]))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {CANCEL_SIGNAL})


def die_with(parent):
    """Linux: the kernel kills this process when the thread that forked it
    ends: no task outlives its worker, unwatched, past its limit."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


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
