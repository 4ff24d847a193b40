"""Worker recycling: past N tasks or M megabytes, a worker replaces itself.

`runworker cq-tasks --max-tasks N --max-memory MB`. Past either, the worker
claims no more, lets its running tasks finish, hands back the tasks it claimed
but did not start (cq.slots, as on SIGTERM), removes its heartbeat, and then
`os.execv`s its own command line: a fresh interpreter, with fresh memory, under
a new worker name. No supervisor is needed, and one that watches the worker
keeps watching it: `execv` keeps the operating system's process id, so systemd,
Docker (the worker as PID 1) or a shell's job control see the same process
throughout, and its SIGTERM still stops it.

A worker also replaces itself when `revoke(terminate=True)` targets a task
that runs in one of its slot threads (cq.cancelling): no thread can be stopped
from outside, a process can be replaced. That thread is abandoned; the others
finish first.
"""

import logging
import os
import sys

logger = logging.getLogger(__name__)

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


def replace_process(name, reason):
    """Run this process's own command line again, in place (never returns)."""
    logger.info("worker replacing itself name=%s reason=%s", name, reason)
    for handler in logging.getLogger().handlers + logging.getLogger("cq").handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # sys.orig_argv is the command line as the interpreter got it (`python -m
    # django runworker ...`, `manage.py runworker ...`): sys.argv lost the `-m`.
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
