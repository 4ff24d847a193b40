"""Worker recycling: past N tasks or M megabytes, a worker is replaced by a new process.

`runworker cq-tasks --max-tasks N --max-memory MB`. With either option the
`runworker` process stays a small parent (`supervise`): it keeps the process id
that systemd, Docker (the worker as PID 1), supervisord or a shell watch, and
runs the worker as a child process, its own command line again with
`CQ_RECYCLING_PARENT` set to its pid in the environment. Past either bound the
child claims no more, lets its running tasks finish, hands back the tasks it
claimed but did not start (cq.slots, as on SIGTERM), removes its heartbeat and
exits with `EXIT_RECYCLE`; the parent starts a new child at once: a fresh
interpreter, fresh memory, a new process id and worker name. No supervisor is
needed. Any other exit of the child ends the parent with the child's status.
SIGTERM and SIGINT to the parent go to the child, and the parent waits for it:
a graceful stop as without recycling. A killed parent takes its child along
(PR_SET_PDEATHSIG, as the fork server does). Without either option there is
no parent.

A worker also exits with `EXIT_RECYCLE` when `revoke(terminate=True)` targets a
task that runs in one of its slot threads (cq.cancelling): no thread can be
stopped from outside, a process can be replaced. That thread is abandoned; the
others finish first. Under a parent a new child follows; without one, the
worker ends, for a supervisor to restart it.
"""

import logging
import os
import signal
import subprocess
import sys

from . import forkserver

logger = logging.getLogger(__name__)

# The exit status of a worker that wants to be replaced (EX_TEMPFAIL: "try again").
EXIT_RECYCLE = 75
# Set, to the parent's pid, in the environment of a worker run by a parent.
PARENT_ENV = "CQ_RECYCLING_PARENT"
# What the parent passes on to its child.
FORWARDED = (signal.SIGTERM, signal.SIGINT)

MEGABYTE = 1024 * 1024


class Recycler:
    """When a worker with `max_tasks` and `max_memory` (MB) should go."""

    def __init__(self, max_tasks=None, max_memory=None):
        for option, value in (("--max-tasks", max_tasks), ("--max-memory", max_memory)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{option} must be an integer >= 1, got {value!r}")
        self.max_tasks = max_tasks
        self.max_memory = max_memory

    @property
    def enabled(self):
        return self.max_tasks is not None or self.max_memory is not None

    def budget(self, handled, held):
        """How many more tasks the worker may claim (None: no limit), having run
        `handled` and holding `held`: a recycling worker runs exactly N. Each
        generation runs at least one task, even one that starts above the
        memory bound (it would otherwise replace itself for ever)."""
        if self.max_memory is not None and handled and rss() > self.max_memory * MEGABYTE:
            return 0
        if self.max_tasks is None:
            return None
        return max(self.max_tasks - handled - held, 0)

    def reason(self, handled):
        """Why the worker should replace itself now, or None."""
        if self.max_tasks is not None and handled >= self.max_tasks:
            return f"max_tasks={self.max_tasks} reached"
        if self.max_memory is not None:
            megabytes = rss() / MEGABYTE
            if megabytes > self.max_memory:
                return f"memory {megabytes:.0f} MB above max_memory={self.max_memory}"
        return None


def rss():
    """This process's resident memory, in bytes."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        # Not Linux: the peak, in kilobytes (bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def has_parent() -> bool:
    """Whether this worker is the child of a recycling parent."""
    return PARENT_ENV in os.environ


def supervise() -> int:
    """The parent: run this process's own command line as a child, again each
    time it exits with EXIT_RECYCLE; return the status to exit with."""
    child = None
    stopping = []

    def forward(signum, frame):
        stopping.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    # sys.orig_argv is the command line as the interpreter got it (`python -m
    # django runworker ...`, `manage.py runworker ...`): sys.argv lost the `-m`.
    command = [sys.executable, *sys.orig_argv[1:]]
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    generation = 0
    while not stopping:
        generation += 1
        child = subprocess.Popen(command, env=env)
        logger.info("recycling parent started a worker pid=%s generation=%s", child.pid, generation)
        if stopping:  # a signal came between the check and the start
            child.send_signal(stopping[0])
        status = child.wait()
        if stopping and -status in stopping:
            return 0  # stopped by our signal before it could handle it (starting up)
        if status != EXIT_RECYCLE:
            # Killed by a signal: the shell's convention, 128 + the signal.
            return status if status >= 0 else 128 - status
    return 0


def die_with_parent():
    """In the child: end with the parent, even one killed by SIGKILL."""
    forkserver.die_with(int(os.environ[PARENT_ENV]))


def exit_for_replacement(name, reason):
    """End this worker process with EXIT_RECYCLE (never returns). os._exit:
    an abandoned slot thread (terminate) is not waited for."""
    if has_parent():
        logger.info("worker exiting to be replaced name=%s reason=%s", name, reason)
    else:
        logger.warning(
            "worker exiting to be replaced name=%s reason=%s: it has no recycling "
            "parent (--max-tasks, --max-memory), its supervisor must restart it",
            name,
            reason,
        )
    for handler in logging.getLogger().handlers + logging.getLogger("cq").handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(EXIT_RECYCLE)
