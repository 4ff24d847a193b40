"""Fixtures for the lanes that use Redis or worker processes. Each lane's
conftest.py imports the ones it needs, so that tests/unit runs without Redis."""

import copy
import fcntl
import os
from types import SimpleNamespace

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from cq.doorbell import doorbell
from tests.faults import RedisServer
from tests.helpers import WorkerProcess, channel_layers


@pytest.fixture(autouse=True)
def heavy_turn(request):
    """Tests marked `heavy` (many worker processes, thousands of tasks, a
    browser) take turns across the lanes that tests/lanes.py runs side by side,
    through a file lock it names: one such test at a time on the machine, so
    the others' waits hold on two cores. Alone, a lane takes no lock."""
    path = os.environ.get("CQ_TEST_HEAVY_LOCK")
    if not path or request.node.get_closest_marker("heavy") is None:
        yield
        return
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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


@pytest.fixture
def start_worker(transactional_db):
    """Start real worker processes: `start_worker("--concurrency", "2")`."""
    started = []

    def start(*args, env=None, channel="cq-tasks", own_group=False):
        worker = WorkerProcess(*args, env=env, channel=channel, own_group=own_group)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def two_shards():
    """Two redis-servers of the test's own as the channel layer's two hosts
    (the cache on the first); pass `two_shards.env` to the workers.
    `two_shards.clients` reach them in `hosts` order."""
    servers = [RedisServer(), RedisServer()]
    for server in servers:
        server.start()
    database = settings.REDIS_URL.rsplit("/", 1)[1]
    urls = [f"{server.url}/{database}" for server in servers]
    layers = channel_layers()
    layers["default"]["CONFIG"]["hosts"] = [
        {"address": url, "socket_timeout": settings.SOCKET_TIMEOUT} for url in urls
    ]
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = urls[0]
    shards = SimpleNamespace(
        env={"CQ_TEST_SHARDS": ",".join(server.url for server in servers)},
        clients=[redis.Redis.from_url(url) for url in urls],
    )
    try:
        with override_settings(CHANNEL_LAYERS=layers, CACHES=caches):
            yield shards
            doorbell.flush(2)
    finally:
        for client in shards.clients:
            client.close()
        for server in servers:
            server.stop()
