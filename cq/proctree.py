"""A time-limited task's process tree: one process group, signalled as one.

A task run in a child process (cq.time_limits) may start programs of its own
(`subprocess.Popen(["ffmpeg", ...])`). Killing only the task's process would
leave them running, re-parented, past the limit and past the worker. So each
task process leads a process group of its own (cq.forkserver puts it there
before any user code runs), everything it starts is in that group unless it
leaves on purpose (`start_new_session=True`), and cq stops the group as a
whole: `SIGTERM`, up to GRACE seconds for it to empty, then `SIGKILL`.

The group is signalled through the leader's pidfd (PIDFD_SIGNAL_PROCESS_GROUP,
Linux 6.9+): the kernel resolves it from the leader's own `struct pid`, so a
group that emptied never lets a recycled number reach someone else's
processes. Older kernels and other platforms use `killpg`, which could, in
theory, hit a group whose id was reused in the few milliseconds since it
emptied.
"""

import errno
import logging
import os
import signal
import time

logger = logging.getLogger(__name__)

# pidfd_send_signal(2) flag: the signal goes to the pidfd's process group.
PIDFD_SIGNAL_PROCESS_GROUP = 4
# Seconds the programs a stopped task started get between SIGTERM and SIGKILL:
# long enough for a program to remove its temporary files, short enough that
# the slot (which waits) is soon free. Most programs go at once, and then the
# slot waits for nothing.
GRACE = 2.0
# How often a stopping group is looked at during its grace.
POLL = 0.01

_group_flag_works = True


def signal_group(pid: int, pidfd: int | None, signum: int) -> bool:
    """Send `signum` to the process group led by `pid` (0: only ask); False
    if no process is left in it."""
    global _group_flag_works
    try:
        if pidfd is not None and _group_flag_works:
            try:
                signal.pidfd_send_signal(pidfd, signum, None, PIDFD_SIGNAL_PROCESS_GROUP)
                return True
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                _group_flag_works = False  # a kernel before 6.9: by number
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member runs as another user (a setuid program): nothing cq may do.
        logger.warning("process group not signalled pgid=%s signal=%s", pid, signum)
        return False
    return True


def signal_process(pid: int, pidfd: int | None, signum: int) -> None:
    """Send `signum` to the process `pid` alone (through its pidfd: never a
    process that reused its number); one that just ended is no error."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def stop_group(pid: int, pidfd: int | None, grace: float = GRACE) -> bool:
    """Stop what is left of the group led by `pid`: SIGTERM, up to `grace`
    seconds for it to empty, then SIGKILL. Returns whether anything was left.
    Costs one system call when nothing is."""
    if not signal_group(pid, pidfd, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(POLL)
        if not signal_group(pid, pidfd, 0):
            return True
    signal_group(pid, pidfd, signal.SIGKILL)
    return True


def lead_own_group(pid: int = 0) -> None:
    """Make the process `pid` (0: this one) the leader of a process group of
    its own. The fork server calls it for a task process it forked, and the
    task process for itself before any user code, whichever runs first: so the
    group exists before the worker hears of the process and before the task
    can start anything."""
    try:
        os.setpgid(pid, pid)
    except OSError:
        # Gone already, or exec'd (not ours): the group stays the server's,
        # and signalling "the group" of this pid finds nobody.
        pass
