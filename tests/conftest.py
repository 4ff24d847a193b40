import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from cq.doorbell import doorbell
from tests.faults import RedisServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def clean_redis():
    """Remove this suite's keys (and only them) after each test."""
    yield
    doorbell.flush()
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{settings.REDIS_PREFIX}*", count=1000))
    keys += list(client.scan_iter(match=f":1:{settings.REDIS_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def channel_layers(address=None, **config):
    """CHANNEL_LAYERS as in the settings, on another Redis or with other `config`."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if address is not None:
        layers["default"]["CONFIG"]["hosts"] = [
            {"address": address, "socket_timeout": settings.SOCKET_TIMEOUT}
        ]
    layers["default"]["CONFIG"].update(config)
    return layers


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, that it may flush, stop and restart.
    This process uses it at once; pass `private_redis.env` to the workers."""
    server = RedisServer()
    server.start()
    database = settings.REDIS_URL.rsplit("/", 1)[1]
    url = f"{server.url}/{database}"
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    server.env = {"CQ_TEST_REDIS": server.url}
    server.client = redis.Redis.from_url(url)
    try:
        with override_settings(CHANNEL_LAYERS=channel_layers(address=url), CACHES=caches):
            yield server
            doorbell.flush(2)
    finally:
        server.client.close()
        server.stop()


def channel_key():
    """The Redis sorted set that holds the cq channel's messages."""
    from cq.conf import settings as cq_settings

    return f"{settings.REDIS_PREFIX}{cq_settings.CHANNEL}"


class WorkerProcess:
    """A real `manage.py runworker cq-tasks` subprocess on the test database."""

    def __init__(self, *args, env=None, channel="cq-tasks"):
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"cq-worker-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w+")
        worker_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CQ_TEST_DB_NAME": connection.settings_dict["NAME"],
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", channel, *args],
            cwd=ROOT, env=worker_env, stdout=self.log, stderr=subprocess.STDOUT,
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


@pytest.fixture
def start_worker(transactional_db):
    """Start real worker processes: `start_worker("--concurrency", "2")`."""
    started = []

    def start(*args, env=None, channel="cq-tasks"):
        worker = WorkerProcess(*args, env=env, channel=channel)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def run_queued(rounds=50):
    """Run every QUEUED task in this process, as a worker would, until none is
    left (subtasks and chained tasks included); returns how many ran."""
    from cq.execution import run_task
    from cq.models import Task

    ran = 0
    for _ in range(rounds):
        ids = list(
            Task.objects.filter(status=Task.STATUS_QUEUED, run_after__isnull=True)
            .order_by("submitted").values_list("pk", flat=True)
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
