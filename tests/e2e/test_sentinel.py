"""Redis Sentinel: a channel layer and a cache that find Redis through
sentinels, a primary SIGKILLed while producers ring and workers run tasks,
its replica promoted. Nothing is lost, nothing runs twice, and every Redis
user of cq (doorbells, the workers' receive, `wait()`'s and cancelling's
pub/sub, the feeder's view of the channel, the log buffer) moves to the new
primary by itself.

Doorbells the old primary had not yet passed to its replica are lost with
it; the feeder rings their rows again after CQ_REQUEUE_AFTER (1 s here)."""

import copy
import threading
import time

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.test import override_settings

from cq import channel as cq_channel
from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.faults import SentinelCluster
from tests.helpers import FAST, channel_layers, errors, refreshed, statuses, unfinished, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

WORKERS = 2
# A producer's pause between two `.delay()` calls.
EVERY = 0.02


@pytest.fixture
def sentinel():
    """A primary, its replica and three sentinels; this process's channel
    layer and cache reach them as the workers' do (`sentinel.env`)."""
    cluster = SentinelCluster(count=3)
    cluster.start()
    db = int(settings.REDIS_URL.rsplit("/", 1)[1])
    layers = channel_layers()
    layers["default"]["CONFIG"]["hosts"] = [
        {
            "sentinels": cluster.sentinels,
            "master_name": cluster.MASTER_NAME,
            "db": db,
            "socket_timeout": settings.SOCKET_TIMEOUT,
        }
    ]
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://{cluster.MASTER_NAME}/{db}"
    caches["default"]["OPTIONS"].update(
        pool_class="cq.sentinel.SentinelPool", sentinels=cluster.sentinels
    )
    cluster.env = {
        **FAST,
        "CQ_TEST_SENTINEL": ",".join(f"{host}:{port}" for host, port in cluster.sentinels),
    }
    cluster.db = db
    try:
        with override_settings(CHANNEL_LAYERS=layers, CACHES=caches):
            yield cluster
            doorbell.flush(2)
    finally:
        cluster.stop()


class Producer(threading.Thread):
    """Calls `record_run.delay()` every EVERY seconds until stopped; `ids` are its tasks."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name, self.ids, self.failures = name, [], []
        self._stopping = threading.Event()

    def run(self):
        try:
            n = 0
            while not self._stopping.is_set():
                try:
                    self.ids.append(tasks.record_run.delay(f"{self.name} {n}").pk)
                except Exception as exc:  # noqa: BLE001 - .delay() must not raise: counted
                    self.failures.append(exc)
                n += 1
                self._stopping.wait(EVERY)
        finally:
            connection.close()

    def stop(self):
        self._stopping.set()
        self.join(10)


def test_failover_loses_no_task_runs_none_twice_and_everything_moves_over(start_worker, sentinel):
    workers = [start_worker("--concurrency", "2", env=sentinel.env) for _ in range(WORKERS)]
    wait_until(lambda: WorkerHeartbeat.objects.count() == WORKERS, 30, message="workers")
    assert tasks.add.delay(1, 1).wait(30).status == Task.STATUS_SUCCESS

    producers = [Producer(f"producer {n}") for n in range(2)]
    for producer in producers:
        producer.start()
    time.sleep(1)
    sentinel.primary.stop()  # SIGKILL
    killed = time.monotonic()

    new = sentinel.replica
    wait_until(lambda: sentinel.master_port() == new.port, 20, message="the replica promoted")
    promoted = time.monotonic() - killed
    client = redis.Redis(port=new.port, db=sentinel.db, socket_timeout=5)
    # From here on the new primary replicates nothing: what it counts, clients sent.
    client.config_resetstat()

    # `.delay()` and `wait()` of this process, and the workers, on the new primary.
    probe = tasks.add.delay(2, 3)
    assert probe.wait(30).result == 5
    recovered = time.monotonic() - killed
    time.sleep(1)
    for producer in producers:
        producer.stop()
    ids = [pk for producer in producers for pk in producer.ids]
    wait_until(lambda: not unfinished(ids), 30, interval=0.2, message="all tasks done")
    all_done = time.monotonic() - killed

    print(
        f"SIGKILL -> replica promoted {promoted:.1f}s, -> a new task done and waited "
        f"{recovered:.1f}s, -> all {len(ids)} tasks done {all_done:.1f}s"
    )
    assert not [p.failures for p in producers if p.failures]
    assert statuses(ids) == {Task.STATUS_SUCCESS: len(ids)}, errors(ids)
    texts = Note.objects.filter(text__startswith="producer ").values("text").annotate(n=Count("pk"))
    assert len(texts) == len(ids)
    assert {row["n"] for row in texts} == {1}, "a task ran twice"

    assert client.info("replication")["role"] == "master"
    # Doorbells sent (the script) and received (blocking pops) on the new primary.
    stats = client.info("commandstats")
    assert stats.get("cmdstat_evalsha", {}).get("calls", 0) > 0, stats
    assert stats.get("cmdstat_bzpopmin", {}).get("calls", 0) > 0, stats

    # The feeder's view of the channel reads the new primary.
    assert cq_channel.inspect() is not None

    # Every worker's cancel listener subscribed again, on the new primary.
    cancel_channel = f"{settings.REDIS_PREFIX}cq-cancel"
    wait_until(
        lambda: dict(client.pubsub_numsub(cancel_channel)).get(cancel_channel.encode()) == WORKERS,
        10,
        message="the cancel listeners subscribed on the new primary",
    )

    # wait() subscribes on the new primary.
    slow = tasks.sleep.delay(1.5)
    waited = {}
    waiter = threading.Thread(target=wait_in_thread, args=(slow, waited))
    waiter.start()
    done_channel = f"{settings.REDIS_PREFIX}cq-done:{slow.pk}".encode()
    wait_until(
        lambda: done_channel in client.pubsub_channels(),
        10,
        message="wait() subscribed on the new primary",
    )
    waiter.join(20)
    assert waited["row"].status == Task.STATUS_SUCCESS

    # A revoke reaches the running task through the new primary.
    running = tasks.until_cancelled.delay()
    wait_until(lambda: cache.get(f"started:{running.pk}"), 20, message="the task started")
    time.sleep(0.2)
    revoked_at = time.time()
    running.revoke()
    seen = wait_until(lambda: cache.get(f"cancelled:{running.pk}"), 5, message="revoke seen")
    assert seen - revoked_at < 2.0

    # The log buffer (the cache) is on the new primary: lines reach the row.
    logged = tasks.write_log_and_wait.delay("after failover", 0)
    row = refreshed(logged).wait(20)
    assert row.status == Task.STATUS_SUCCESS
    assert [line["message"] for line in row.logs] == [
        "after failover started",
        "after failover done",
    ]
    assert client.info("commandstats").get("cmdstat_incrby", {}).get("calls", 0) > 0

    for worker in workers:
        assert "Traceback" not in worker.output(), worker.output()[-3000:]


def wait_in_thread(task, waited):
    try:
        waited["row"] = refreshed(task).wait(20)
    finally:
        connection.close()  # the test database is dropped at the end
