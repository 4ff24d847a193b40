"""Real `runworker cq-tasks` subprocesses, each in a process group of its own.

Each one is stopped by its group id only (SIGTERM, then SIGKILL after a grace
period), so nothing the bench started survives it and nothing else is touched.
"""

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cq

from . import metrics, probes
from .sqlcount import ENV as COUNT_SQL_ENV

logger = logging.getLogger(__name__)

STOP_GRACE = 20.0


class WorkerDied(RuntimeError):
    """A worker process exited while the bench still needed it."""


class WorkerProcess:
    def __init__(self, hard_limit, concurrency=1, count_sql=None):
        self.log = tempfile.NamedTemporaryFile(
            "w+", prefix="cq-bench-worker-", suffix=".log", delete=False
        )
        env = {**os.environ, "PYTHONPATH": _python_path()}
        if count_sql:
            env[COUNT_SQL_ENV] = count_sql
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.worker",
                str(max(1, int(hard_limit))),
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: pgid == pid
        )
        self.peak_rss = self.log_sample = None
        self.log_lines = 0

    @property
    def pid(self):
        return self.process.pid

    def check_alive(self):
        if self.process.poll() is not None:
            raise WorkerDied(
                f"worker {self.pid} exited with {self.process.returncode}:\n{self.tail()}"
            )

    def rss(self):
        return probes.memory(self.pid)

    def tail(self, lines=30):
        if not self.log.closed:
            self.log.flush()
        return "".join(Path(self.log.name).read_text().splitlines(True)[-lines:])

    def stop(self):
        """Graceful stop; afterwards `peak_rss` (bytes, or None), `log_lines`
        (records the worker logged) and `log_sample` (the first one) are set."""
        if self.process.returncode is None:
            self.peak_rss = (self.rss() or {}).get("peak")
            # Signalled only while not reaped: the group id is still ours.
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                logger.warning("worker did not stop in %ss, killing pid=%s", STOP_GRACE, self.pid)
                _signal_group(self.pid, signal.SIGKILL)
                self.process.wait(5)
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace")
        # A record is a line that starts a message, not a traceback's continuation.
        records = [
            line
            for line in text.splitlines()
            if line and not line[0].isspace() and not line.startswith("Traceback")
        ]
        self.log_lines, self.log_sample = len(records), (records[0][:200] if records else None)
        if self.process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            logger.warning(
                "worker pid=%s exited with %s:\n%s", self.pid, self.process.returncode, self.tail()
            )
        os.unlink(self.log.name)


class Pool:
    """The workers of one scenario; a context manager that always stops them."""

    def __init__(self, bench, processes, count_sql=None):
        self.bench = bench
        self.workers = [
            WorkerProcess(bench.remaining() + 30, bench.concurrency, count_sql)
            for _ in range(processes)
        ]
        bench.live.extend(self.workers)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                self.wait_channel_empty()
        finally:
            self.stop()

    def wait_channel_empty(self, timeout=10.0):
        """Let the workers take every doorbell left in the channel (duplicates
        the sweeper rang), so that none spills into the next scenario."""
        clients = probes.layer_redis_clients()
        deadline = min(time.monotonic() + timeout, self.bench.deadline)
        while time.monotonic() < deadline:
            if not probes.channel_backlog(self.bench.layer, clients):
                return
            time.sleep(0.05)

    def wait_done(self, count):
        return metrics.wait_done(count, self.bench.deadline, self.workers)

    def warm_up(self, count):
        """Run `count` tasks so that every process has booted and connected."""
        from .tasks import noop

        metrics.reset()
        for i in range(count):
            noop.delay(-1 - i)
        self.wait_done(count)
        metrics.reset()

    def stop(self):
        for worker in self.workers:
            if worker in self.bench.live:
                self.bench.live.remove(worker)
                worker.stop()
                self.bench.note_stopped(worker)


def _signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _python_path():
    # The workers import the same settings module, bench and cq as this process.
    paths = [
        os.getcwd(),
        str(Path(__file__).resolve().parent.parent),
        str(Path(cq.__file__).resolve().parent.parent),
    ]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)
