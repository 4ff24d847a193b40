"""What tests of every lane share: real worker processes, waiting, running queued
tasks in this process, the channel in Redis, and the fault tests' timings and
queries. Plain functions and classes; the fixtures are in tests/fixtures.py."""

import copy
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Count

from cq.doorbell import doorbell
from cq.models import Task

ROOT = Path(__file__).resolve().parent.parent


def channel_layers(address=None, **config):
    """CHANNEL_LAYERS as in the settings, on another Redis or with other `config`."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if address is not None:
        layers["default"]["CONFIG"]["hosts"] = [
            {"address": address, "socket_timeout": settings.SOCKET_TIMEOUT}
        ]
    layers["default"]["CONFIG"].update(config)
    return layers


def channel_key():
    """The Redis sorted set that holds the cq channel's messages."""
    from cq.conf import settings as cq_settings

    return f"{settings.REDIS_PREFIX}{cq_settings.CHANNEL}"


def process_env(env=None):
    """The environment of a subprocess of the suite: the test settings, on the
    test database, with `env` on top."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CQ_TEST_DB_NAME": connection.settings_dict["NAME"],
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }


class WorkerProcess:
    """A real `manage.py runworker cq-tasks` subprocess on the test database.

    With `host`, it runs as if on a machine of that name: in a UTS namespace of
    its own (root only), so that its worker name (`host:pid:random`) says
    which "machine" it is on. `unshare --uts` needs no fork and the shell
    `exec`s the worker, so `pid` is still the worker's own and signals reach it.

    With `own_group`, it leads a process group of its own (as a shell's job
    does), which a test may signal as a whole: `os.killpg(worker.pid, ...)`."""

    def __init__(self, *args, env=None, channel="cq-tasks", host=None, own_group=False):
        self.log_path = (
            Path(os.environ.get("TMPDIR", "/tmp"))
            / f"cq-worker-{os.getpid()}-{time.monotonic_ns()}.log"
        )
        self.log = open(self.log_path, "w+")
        command = [sys.executable, "-m", "django", "runworker", channel, *args]
        if host is not None:
            command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, *command]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=process_env(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )

    @property
    def pid(self):
        return self.process.pid

    def signal(self, signum):
        self.process.send_signal(signum)

    def kill(self):
        self.process.kill()
        self.process.wait(10)

    def wait(self, timeout):
        return self.process.wait(timeout)

    def output(self):
        self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        self.log_path.unlink(missing_ok=True)


def alive(pid):
    """Whether that process runs (a zombie, killed but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone before the open, or between the open and the read (reaped).
        return False


def run_queued(rounds=50):
    """Run every QUEUED task in this process, as a worker would, until none is
    left (subtasks and chained tasks included); returns how many ran."""
    from cq.execution import run_task
    from cq.models import Task

    ran = 0
    for _ in range(rounds):
        ids = list(
            Task.objects.filter(status=Task.STATUS_QUEUED, run_after__isnull=True)
            .order_by("submitted")
            .values_list("pk", flat=True)
        )
        if not ids:
            return ran
        for task_id in ids:
            ran += run_task(task_id) is not None
    raise AssertionError(f"tasks still queued after {rounds} rounds")


def channel_depth(client):
    """Doorbells waiting on the cq channel in Redis, once the sends in flight are done."""
    doorbell.flush()
    return client.zcard(channel_key())


def wait_until(predicate, timeout=20.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


# ---- fault tests: recovery timings and what became of a batch of tasks

# Recovery timings for these tests (cq's defaults are 30 s, 5 s and 10 s; set
# CQ_TEST_FAULT_WORKER_TIMEOUT=30 to measure recovery with the defaults).
TIMEOUT = float(os.environ.get("CQ_TEST_FAULT_WORKER_TIMEOUT", "3"))
FAST = {
    "CQ_TEST_WORKER_TIMEOUT": str(TIMEOUT),
    "CQ_TEST_HEARTBEAT_INTERVAL": str(TIMEOUT / 6),
    "CQ_TEST_REQUEUE_AFTER": "1",
}


def refreshed(task):
    task.refresh_from_db()
    return task


def unfinished(ids):
    return Task.objects.filter(pk__in=ids).exclude(status__in=Task.STATUS_DONE).count()


def statuses(ids):
    return dict(Task.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("pk")))


def errors(ids):
    """The errors of the tasks that did not succeed, for assertion messages."""
    return list(
        Task.objects.filter(pk__in=ids)
        .exclude(status=Task.STATUS_SUCCESS)
        .values_list("status", "error", "traceback")[:3]
    )


# ---- the sweeper's view of workers, without a worker process

DEAD = "dead-host:1:aaaaaa"


class FakeWorker:
    """What the sweeper asks of the worker running it."""

    def __init__(self, name="sweeper:2:bbbbbb", running=(), steady=True):
        self.name, self.concurrency, self.idle = name, 1, True
        self.queues = ["default"]
        self._running, self._steady = {str(pk) for pk in running}, steady

    def running_ids(self):
        return set(self._running)

    def heartbeat_steady(self):
        return self._steady


def running(fn, now, worker=DEAD, started_ago=50, args=(), **fields):
    return Task.objects.create(
        func_name=fn.name,
        args=list(args),
        status=Task.STATUS_RUNNING,
        worker=worker,
        started=now - timedelta(seconds=started_ago),
        **fields,
    )
