"""A channel layer with two hosts (shards), two private redis-servers, a real
worker: it runs the tasks rung on either shard, promptly (not 10 s later
through the feeder), and hears `wait()`'s and revoke's pub/sub on host 0."""

import threading
import time

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count

from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import channel_key, errors, refreshed, statuses, unfinished, wait_until

pytestmark = pytest.mark.slow

PER_SHARD = 10


def test_a_worker_serves_every_shard_and_pub_sub_on_the_first(start_worker, two_shards):
    # CQ_REQUEUE_AFTER stays 10 s: a doorbell left unread would show as a 10 s delay.
    start_worker("--concurrency", "2", env=two_shards.env)
    wait_until(lambda: WorkerHeartbeat.objects.count() == 1, 30, message="the worker")
    assert tasks.add.delay(1, 1).wait(30).status == Task.STATUS_SUCCESS
    first, second = two_shards.clients
    cancel_channel = f"{settings.REDIS_PREFIX}cq-cancel".encode()
    wait_until(
        lambda: dict(first.pubsub_numsub(cancel_channel)).get(cancel_channel) == 1,
        10,
        message="the cancel listener subscribed on host 0",
    )

    # Rows, and their doorbells written by hand: half on each shard.
    layer = get_channel_layer()
    rows = Task.objects.bulk_create(
        Task(func_name=tasks.record_run.name, args=[f"shard {n}"], status=Task.STATUS_QUEUED)
        for n in range(2 * PER_SHARD)
    )
    ids = [row.pk for row in rows]
    started = time.monotonic()
    for client, part in ((first, ids[:PER_SHARD]), (second, ids[PER_SHARD:])):
        now = time.time()
        doorbells = {layer.serialize({"type": "run_task", "task_id": str(pk)}) for pk in part}
        client.zadd(channel_key(), {member: now for member in doorbells})
    wait_until(lambda: not unfinished(ids), 20, interval=0.1, message="the tasks of both shards")
    elapsed = time.monotonic() - started

    print(f"{len(ids)} tasks rung on two shards: {elapsed:.1f}s")
    assert statuses(ids) == {Task.STATUS_SUCCESS: len(ids)}, errors(ids)
    assert elapsed < 5, "a shard's doorbells waited for the feeder"
    counts = Note.objects.filter(text__startswith="shard ").values("text").annotate(n=Count("pk"))
    assert len(counts) == len(ids) and {row["n"] for row in counts} == {1}
    # Every doorbell was popped, from both shards.
    wait_until(
        lambda: first.zcard(channel_key()) == second.zcard(channel_key()) == 0,
        5,
        message="both shards emptied",
    )

    # wait() subscribes on host 0, where the worker announces the end.
    slow = tasks.sleep.delay(1)
    waited = {}
    waiter = threading.Thread(target=wait_in_thread, args=(slow, waited))
    waiter.start()
    done_channel = f"{settings.REDIS_PREFIX}cq-done:{slow.pk}".encode()
    wait_until(lambda: done_channel in first.pubsub_channels(), 10, message="wait() subscribed")
    waiter.join(20)
    assert waited["row"].status == Task.STATUS_SUCCESS

    # A revoke reaches the running task through host 0.
    running = tasks.until_cancelled.delay()
    wait_until(lambda: cache.get(f"started:{running.pk}"), 20, message="the task started")
    time.sleep(0.2)
    revoked_at = time.time()
    running.revoke()
    seen = wait_until(lambda: cache.get(f"cancelled:{running.pk}"), 5, message="revoke seen")
    assert seen - revoked_at < 2.0
    assert refreshed(running).status == Task.STATUS_REVOKED


def wait_in_thread(task, waited):
    try:
        waited["row"] = refreshed(task).wait(20)
    finally:
        connection.close()  # the test database is dropped at the end
