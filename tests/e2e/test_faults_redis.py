"""Redis that hangs instead of failing, and junk on the channel, with real
worker processes: half-open connections (a crashed host, a partition) behind a
frozen TCP proxy, an undecodable message among good ones, a flood of junk.

The channel layer here has `socket_timeout: None`, so only cq's own deadlines
(CQ_REDIS_TIMEOUT) can end a hung operation."""

import copy
import signal
import subprocess
import threading
import time
import uuid
from io import StringIO

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from cq import transport
from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.faults import RedisServer, TcpProxy
from tests.helpers import (
    FAST,
    channel_key,
    channel_layers,
    errors,
    refreshed,
    statuses,
    unfinished,
    wait_until,
)

pytestmark = pytest.mark.slow

# How long SIGTERM may take on a worker whose Redis hangs: its housekeeping
# round and its doorbells each give up after CQ_REDIS_TIMEOUT (5 s).
DRAIN = 15


@pytest.fixture
def frozen_redis():
    """A private redis-server behind a TcpProxy that the test may freeze;
    this process and the workers (`frozen_redis.env`) reach it through the proxy."""
    server = RedisServer()
    server.start()
    proxy = TcpProxy(server.port)
    proxy.start()
    database = settings.REDIS_URL.rsplit("/", 1)[1]
    url = f"redis://127.0.0.1:{proxy.port}/{database}"
    layers = channel_layers(address=url)
    layers["default"]["CONFIG"]["hosts"][0]["socket_timeout"] = None
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    proxy.env = {
        **FAST,
        "CQ_TEST_REDIS": f"redis://127.0.0.1:{proxy.port}",
        "CQ_TEST_SOCKET_TIMEOUT": "none",
    }
    try:
        with override_settings(CHANNEL_LAYERS=layers, CACHES=caches):
            yield proxy
    finally:
        proxy.stop()
        server.stop()


def warm_up(worker_count=1):
    """Run a task end to end, so the workers and this process hold open
    connections (channel, pub/sub, cache) that a freeze then leaves half-open."""
    task = tasks.add.delay(1, 1)
    wait_until(lambda: WorkerHeartbeat.objects.count() == worker_count, 30, message="workers")
    assert refreshed(task).wait(30).status == Task.STATUS_SUCCESS


def test_half_open_connections_are_replaced_and_later_tasks_complete(start_worker, frozen_redis):
    start_worker("--concurrency", "2", env=frozen_redis.env)
    warm_up()
    frozen_redis.freeze(new="work")
    frozen_at = time.monotonic()

    ids = [task.pk for task in tasks.record_run.delay_many([(f"after {n}",) for n in range(20)])]
    wait_until(lambda: not unfinished(ids), 30, interval=0.2, message="all tasks done")

    print(f"freeze -> 20 tasks done: {time.monotonic() - frozen_at:.1f}s")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 20}, errors(ids)


def test_worker_whose_redis_hangs_says_so_honours_wait_timeouts_and_stops(
    start_worker, frozen_redis
):
    worker = start_worker(env=frozen_redis.env)
    warm_up()
    frozen_redis.freeze(new="hang")
    # On a queue this worker does not run, so that it stays QUEUED whatever the
    # worker does: a slot that finished the warm-up task claims the next due
    # rows at once, doorbell or not (a pause here raced that claim), and once
    # the worker sees Redis hang it claims due rows from the table.
    task = tasks.add.delay_args((2, 2), queue="elsewhere")

    started = time.monotonic()
    assert refreshed(task).wait(timeout=2).status == Task.STATUS_QUEUED
    waited = time.monotonic() - started
    print(f"wait(timeout=2) with Redis hung: {waited:.2f}s")
    assert waited < 2.5

    output = StringIO()
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(channel_down_since__isnull=False).exists(),
        30,
        message="the heartbeat reporting the channel down",
    )
    call_command("cq_status", stdout=output)
    [line] = [line for line in output.getvalue().splitlines() if worker_name(worker) in line]
    assert "alive" in line and "channel unreachable for" in line

    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        assert worker.wait(DRAIN) == 0
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop within {DRAIN}s of SIGTERM")
    print(f"SIGTERM -> exit with Redis hung: {time.monotonic() - started:.1f}s")


def worker_name(worker):
    [name] = WorkerHeartbeat.objects.filter(name__contains=f":{worker.pid}:").values_list(
        "name", flat=True
    )
    return name


def test_undecodable_message_among_good_ones_skips_only_itself(start_worker, redis_client):
    layer = transport_layer()
    good = [task.pk for task in tasks.record_run.delay_many([(f"good {n}",) for n in range(4)])]
    doorbell.flush()
    # Rung by hand, in one batch around a member no serializer can read.
    redis_client.delete(channel_key())
    members = [layer.serialize({"type": "run_task", "task_id": str(pk)}) for pk in good]
    members.insert(2, b"\xff not a message")
    now = time.time()
    redis_client.zadd(channel_key(), {member: now + n / 1000 for n, member in enumerate(members)})

    started = time.monotonic()
    worker = start_worker("--concurrency", "8")
    wait_until(lambda: not unfinished(good), 20, message="the good tasks done")
    elapsed = time.monotonic() - started

    print(f"good tasks around an undecodable one: {elapsed:.1f}s")
    assert statuses(good) == {Task.STATUS_SUCCESS: 4}
    # Their own doorbells ran them, not the feeder 10 s (CQ_REQUEUE_AFTER) later.
    assert elapsed < 8
    # The slots may claim the good rows from the table before the loop pops the
    # channel, so the junk member is read (and skipped) a moment after they finish.
    wait_until(
        lambda: "undecodable message skipped" in worker.output(), 10, message="the skip logged"
    )
    assert "receive failed" not in worker.output()


def transport_layer():
    from channels.layers import get_channel_layer

    return get_channel_layer()


def test_flood_of_junk_on_the_channel_does_not_starve_real_tasks(start_worker, private_redis):
    capacity, stop = 100, threading.Event()
    env = {**FAST, **private_redis.env, "CQ_TEST_CAPACITY": str(capacity)}
    with override_settings(CHANNEL_LAYERS=channel_layers(capacity=capacity)):
        layer = transport_layer()
        flood = threading.Thread(
            target=flood_with_junk, args=(layer, private_redis.client, stop), daemon=True
        )
        flood.start()
        try:
            wait_until(
                lambda: private_redis.client.zcard(channel_key()) >= capacity,
                10,
                message="the channel full of junk",
            )
            start_worker("--concurrency", "4", env=env)
            ids = [
                task.pk
                for task in tasks.record_run.delay_many([(f"real {n}",) for n in range(100)])
            ]
            started = time.monotonic()
            # Without the flood they take about a second.
            wait_until(lambda: not unfinished(ids), 8, interval=0.2, message="real tasks done")
            print(f"100 real tasks under a junk flood: {time.monotonic() - started:.1f}s")
        finally:
            stop.set()
            flood.join(10)

    assert statuses(ids) == {Task.STATUS_SUCCESS: 100}, errors(ids)


def flood_with_junk(layer, client, stop, every=0.001, batch=100):
    """Send well-formed junk as channels-redis would (capacity respected):
    messages that are no doorbell, and doorbells of tasks that do not exist.
    Refilled every millisecond, the channel stays full."""
    client = redis.Redis(connection_pool=client.connection_pool)
    send = client.register_script(transport.SEND_SCRIPT)
    key, capacity, expiry = channel_key(), layer.get_capacity("cq-tasks"), int(layer.expiry)
    while not stop.is_set():
        junk = [layer.serialize({"type": "junk", "n": uuid.uuid4().hex}) for _ in range(batch // 2)]
        junk += [
            layer.serialize({"type": "run_task", "task_id": str(uuid.uuid4())})
            for _ in range(batch // 2)
        ]
        now = time.time()
        send(keys=[key], args=[int(now) - expiry, capacity, expiry, now, *junk])
        time.sleep(every)
