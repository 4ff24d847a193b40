"""What the bench measures. Each scenario starts from an empty queue, runs one
repetition, records its numbers in `bench.results` and leaves no rows behind.

Times: enqueue rates use `time.perf_counter`; completions carry `time.time()`
stamps from the workers (same machine, same clock), as in the peers' harness.
"""

import asyncio
import random
import statistics
import time

from channels.layers import channel_layers
from django.db import connection, transaction
from django.utils import timezone

from cq.conf import settings as cq_settings
from cq.doorbell import doorbell
from cq.models import Task, WorkerHeartbeat

from . import limits, metrics, probes
from .sqlcount import SQLCounter
from .tasks import NAME, noop
from .workers import Pool

TRANSACTION_SIZE = 100
BULK_ENQUEUE = "delay_many"
# Rows per `delay_many` call in the scaling scenario.
SCALE_BATCH = 1000
# Statements of the bench's own probes, not of cq.
IGNORED_REDIS = ("info", "config|resetstat", "client|list", "ping")


def delete_bench_rows():
    """Remove every row of the no-op task (raw SQL: no cascade to collect).

    On PostgreSQL the tables are vacuumed too: with autovacuum off or slow,
    dead rows from earlier scenarios would make later ones slower.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Task._meta.db_table} WHERE func_name = %s", [NAME])
        if connection.vendor == "postgresql":
            cursor.execute(
                f"VACUUM ANALYZE {Task._meta.db_table}, {WorkerHeartbeat._meta.db_table}"
            )


def flush_doorbells():
    # `.delay()` returns before its doorbell is sent; an enqueue is complete
    # once the sends are done.
    doorbell.flush(timeout=60)


def enqueue(method, n, start=0):
    """Queue n no-op tasks with `method`; returns the elapsed seconds."""
    began = time.perf_counter()
    if method == "delay":
        for i in range(start, start + n):
            noop.delay(i)
    elif method == "atomic":
        for first in range(start, start + n, TRANSACTION_SIZE):
            with transaction.atomic():
                for i in range(first, min(first + TRANSACTION_SIZE, start + n)):
                    noop.delay(i)
    else:
        noop.delay_many([(i,) for i in range(start, start + n)])
    flush_doorbells()
    return time.perf_counter() - began


def enqueue_rates(bench, rep):
    """`.delay()` outside a transaction, inside transactions of 100, and
    `delay_many`: N each with no worker running, then drained unmeasured."""
    methods = ["delay", "atomic", BULK_ENQUEUE]
    # Rotate the order so no method always meets the largest table.
    methods = methods[rep % 3 :] + methods[: rep % 3]
    metrics.reset()
    for k, method in enumerate(methods):
        bench.warnings.scenario = f"enqueue.{method}"
        seconds = enqueue(method, bench.n, start=k * bench.n)
        bench.record(f"enqueue.{method}", bench.n / seconds)
    bench.warnings.scenario = "enqueue"
    with Pool(bench, max(bench.worker_counts)) as pool:
        pool.wait_done(3 * bench.n)
    delete_bench_rows()


def drain(bench, rep, processes):
    """Queue pre-filled with workers stopped, then started: (N-1) / (last -
    first completion), so worker boot is excluded."""
    metrics.reset()
    enqueue("delay", bench.n)
    with Pool(bench, processes) as pool:
        first, last = pool.wait_done(bench.n)
    bench.record(f"drain.{processes}", (bench.n - 1) / (last - first))
    delete_bench_rows()


def end_to_end(bench, rep, processes):
    """Workers warmed up; the producer queues N as fast as it can:
    N / (last completion - first enqueue)."""
    with Pool(bench, processes) as pool:
        pool.warm_up(4 * processes)
        pids = {worker.pid for worker in pool.workers}
        cpu_before = probes.cpu_snapshot(pids)
        began = time.time()
        enqueue_seconds = enqueue("delay", bench.n)
        _, last = pool.wait_done(bench.n)
        cpu_used = probes.cpu_snapshot(pids) - cpu_before
    bench.record(f"e2e.{processes}", bench.n / (last - began))
    bench.record(f"e2e_enqueue.{processes}", bench.n / enqueue_seconds)
    # Where the machine's CPU went, per task: what bounds throughput on 2 cores.
    for group in ("producer", "workers", "postgres", "redis"):
        bench.record(f"e2e_cpu.{processes}.{group}", cpu_used[group] / bench.n * 1000)
    bench.record(f"e2e_cpu.{processes}.total", sum(cpu_used.values()) / bench.n * 1000)
    delete_bench_rows()


def scale(bench, rep, processes):
    """The scaling curve: W warmed-up worker processes, then N tasks queued in
    bulk (`delay_many`, so the producer costs little): N / (last completion -
    first enqueue), and where the machine's CPU went per task, the database's
    above all: the share that more workers cannot spread."""
    with Pool(bench, processes) as pool:
        pool.warm_up(4 * processes)
        pids = {worker.pid for worker in pool.workers}
        pg_before = probes.pg_snapshot()
        cpu_before = probes.cpu_snapshot(pids)
        began = time.time()
        for first in range(0, bench.n, SCALE_BATCH):
            noop.delay_many([(i,) for i in range(first, min(first + SCALE_BATCH, bench.n))])
        flush_doorbells()
        _, last = pool.wait_done(bench.n)
        cpu_used = probes.cpu_snapshot(pids) - cpu_before
        connections = probes.pg_connections()
    bench.record(f"scale.{processes}", bench.n / (last - began))
    if pg_before is not None:
        # Read once the workers have stopped: a backend reports its counters
        # at exit. Their heartbeats and housekeeping meanwhile count too.
        probes.settle()
        commits = probes.pg_snapshot()["xact_commit"] - pg_before["xact_commit"]
        bench.record(f"scale_commits.{processes}", commits / bench.n)
    for group in ("workers", "postgres", "redis"):
        bench.record(f"scale_cpu.{processes}.{group}", cpu_used[group] / bench.n * 1000)
    if connections is not None:
        bench.record(f"scale_connections.{processes}", connections)
    delete_bench_rows()


def latency(bench, rep, idle):
    """Sequential round trips `.delay()` -> `task.wait()` returning, one
    worker; idle: the worker waits 250-750 ms (uniform) before each task."""
    kind = "idle" if idle else "busy"
    count = bench.idle_samples if idle else bench.latency_samples
    rng = random.Random(rep)
    warm = 3 if idle else 10  # the first round trips are discarded
    round_trips, bodies = [], []
    with Pool(bench, 1) as pool:
        pool.warm_up(5)
        for i in range(warm + count):
            if idle:
                time.sleep(rng.uniform(0.25, 0.75))
            round_trip, body = _round_trip(bench, i)
            if i >= warm:
                round_trips.append(round_trip)
                bodies.append(body)
    bench.record(f"latency.{kind}.p50", statistics.median(round_trips))
    bench.record(f"latency.{kind}.p99", percentile(round_trips, 99))
    bench.record(f"latency.{kind}.body", statistics.median(bodies))
    delete_bench_rows()


def _round_trip(bench, i):
    wall = time.time()
    began = time.perf_counter()
    task = noop.delay(i)
    task.wait(timeout=min(30, max(1, bench.remaining())))
    elapsed = time.perf_counter() - began
    if task.status != Task.STATUS_SUCCESS:
        raise metrics.BenchTimeout(f"round trip {i}: task {task.pk} is {task.status!r}")
    return elapsed * 1000, (metrics.last_done() - wall) * 1000


def work_per_task(bench, rep):
    """Database and Redis work per task over a pre-filled run with one worker:
    N `.delay()` calls, then the worker drains them and stops."""
    redis_clients = probes.layer_redis_clients()
    metrics.reset()
    metrics.client().delete(metrics.key("sql"))
    probes.settle()
    pg_before = probes.pg_snapshot()
    redis_before = probes.redis_snapshot(redis_clients)
    producer = SQLCounter().install()
    try:
        enqueue("delay", bench.n)
    finally:
        producer.uninstall()
    with Pool(bench, 1, count_sql="sql") as pool:
        pool.wait_done(bench.n)
    # The pool has stopped: the last task's bookkeeping is committed.
    redis_delta = probes.redis_snapshot(redis_clients) - redis_before
    if pg_before is not None:
        probes.settle()
        pg_delta = probes.pg_snapshot() - pg_before
        for name in probes.PG_COUNTERS:
            bench.record(f"pg.{name}", pg_delta[name] / bench.n)
    _record_sql(bench, producer.snapshot())
    _record_redis(bench, redis_delta)
    delete_bench_rows()


def _record_sql(bench, producer_counts):
    worker_counts = {
        name.decode(): int(value)
        for name, value in metrics.client().hgetall(metrics.key("sql")).items()
    }
    metrics.client().delete(metrics.key("sql"))
    n = bench.n
    for name in ("statements", "transactions"):
        bench.record(f"sql.producer.{name}", producer_counts[name] / n)
        bench.record(f"sql.worker.{name}", worker_counts.get(name, 0) / n)
    verbs = {}
    for counts in (producer_counts, worker_counts):
        for name, value in counts.items():
            if name.startswith("sql_"):
                verbs[name[4:]] = verbs.get(name[4:], 0) + value
    bench.record_detail("sql.verbs", {verb: value / n for verb, value in verbs.items()})


def _record_redis(bench, delta):
    calls = {name: value for name, value in delta.items() if name not in IGNORED_REDIS}
    bench.record("redis.commands", sum(calls.values()) / bench.n)
    bench.record_detail("redis.top", {name: value / bench.n for name, value in calls.items()})


def memory(bench):
    """One worker runs `memory_tasks` tasks, fed in batches so the backlog stays
    small; its RSS after the first `early` tasks and after all of them."""
    total = bench.memory_tasks
    early = min(1000, max(1, total // 10))
    metrics.reset()
    with Pool(bench, 1) as pool:
        done = batches = 0
        for target in (early, total):
            while done < target:
                size = min(bench.memory_batch, target - done)
                noop.delay_many([(i,) for i in range(done, done + size)])
                done += size
                pool.wait_done(done)
                batches += 1
                if batches % 20 == 0:
                    # Keep the table small, as a clean-up job would.
                    delete_bench_rows()
            rss = pool.workers[0].rss()
            bench.memory_points.append((target, rss and rss["rss"]))
    delete_bench_rows()


def calibration(bench, rep):
    """How fast this machine is right now, to read the other rows against on a
    noisy machine: a task row's lifecycle through the ORM alone (INSERT, then 2
    UPDATEs, each its own autocommit transaction, as the peers' `bench_orm.py`),
    the channel layer alone (N sends, then N receives, one asyncio loop), and
    the raw database limits of `bench.limits` that the report divides cq's
    rates by."""
    count = calibration_count(bench)
    began = time.perf_counter()
    for i in range(count):
        row = Task.objects.create(func_name=NAME, args=[i], status=Task.STATUS_QUEUED)
        Task.objects.filter(pk=row.pk).update(status=Task.STATUS_RUNNING, started=timezone.now())
        Task.objects.filter(pk=row.pk).update(
            status=Task.STATUS_SUCCESS, result=i, finished=timezone.now()
        )
    bench.record("calibrate.orm", count / (time.perf_counter() - began))
    delete_bench_rows()
    send_seconds, receive_seconds = asyncio.run(_layer_alone(count))
    bench.record("calibrate.send", count / send_seconds)
    bench.record("calibrate.receive", count / receive_seconds)
    bench.record("calibrate.insert", limits.insert_rate(NAME, count))
    delete_bench_rows()
    bench.record("calibrate.batch", limits.batch_rate(NAME, batch_rows(bench)))
    delete_bench_rows()


def calibration_count(bench):
    return min(bench.n, 1000)


def batch_rows(bench):
    # At least 20 batches, so that one slow statement does not make the rate.
    return max(bench.n, 20 * limits.BATCH)


async def _layer_alone(count):
    # A layer instance of its own, and a channel no worker listens on.
    layer = channel_layers.make_backend(cq_settings.CHANNEL_LAYER)
    channel = "cq-bench-calibration"
    began = time.perf_counter()
    for i in range(count):
        await layer.send(channel, {"type": "calibrate", "i": i})
    sent = time.perf_counter()
    for _ in range(count):
        await layer.receive(channel)
    received = time.perf_counter()
    # Not `flush()`: that deletes every key under the layer's prefix.
    await layer.close_pools()
    return sent - began, received - sent


def percentile(values, q):
    """Nearest-rank percentile, as the peers' harness computes it."""
    ordered = sorted(values)
    index = max(0, -(-len(ordered) * q // 100) - 1)
    return ordered[int(index)]
