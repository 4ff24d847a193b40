"""`cq_bench_outage`: what a Redis outage costs, with real worker processes.

    cq_bench_outage --settings bench.settings_pg       # or bench.settings_sqlite
    cq_bench_outage --outage 60 --every 0.1 --workers 2 --idle 20

The channel layer (and the cache) run on a private redis-server that the
command kills and restarts; completions are counted on a second one, as in
`cq_bench`. In order:

1. idle, Redis up: the workers' statements per second (their own SQL
   counters, bench.sqlcount, read over `--idle` seconds);
2. Redis killed; idle again: the same count, now with the outage poll;
3. still down: one `.delay()` every `--every` seconds for `--outage` seconds,
   then how many ran before Redis came back, and their delay from
   `submitted` to `started` (p50, p95, max);
4. Redis restarted: how long until every worker's heartbeat says the channel
   answers again, and round trips on doorbells.

Only the no-op task's rows are touched; they are deleted at the end.
"""

import copy
import os
import statistics
import time
from collections import Counter

from django.conf import settings
from django.core.management import BaseCommand, CommandError
from django.test import override_settings

from bench import metrics
from bench.scenarios import delete_bench_rows, percentile
from bench.sqlcount import LIVE_ENV, live_totals
from bench.tasks import NAME, noop
from bench.workers import WorkerProcess
from cq.conf import settings as cq_settings
from cq.models import Task, WorkerHeartbeat

LIVE_HASH = "outage-sql"
# Generous: the workers share two cores with the bench, PostgreSQL and Redis.
DEADLINE = 60.0


class Command(BaseCommand):
    help = "Measure task delays and the database load of polling during a Redis outage."

    def add_arguments(self, parser):
        parser.add_argument("--outage", type=float, default=60.0, help="seconds of traffic")
        parser.add_argument("--every", type=float, default=0.1, help="seconds between tasks")
        parser.add_argument("--workers", type=int, default=2, help="worker processes")
        parser.add_argument("--concurrency", type=int, default=1, help="slots per worker")
        parser.add_argument(
            "--idle", type=float, default=20.0, help="seconds each idle window is counted"
        )

    def handle(self, *args, outage, every, workers, concurrency, idle, **options):
        if Task.objects.exclude(func_name=NAME).filter(status__in=Task.STATUS_ACTIVE).exists():
            raise CommandError("the bench's database holds other active tasks; use its own")
        layer, counters = metrics.PrivateRedis(), metrics.PrivateRedis()
        os.environ.update(
            {
                "CQ_BENCH_REDIS": layer.url,
                metrics.ENV_URL: counters.url,
                metrics.ENV_PREFIX: "cqbench-outage:",
                LIVE_ENV: LIVE_HASH,
            }
        )
        pool = []
        try:
            with override_settings(**_settings_on(layer.url)):
                delete_bench_rows()
                hard_limit = 4 * idle + outage + 10 * DEADLINE
                pool = [WorkerProcess(hard_limit, concurrency) for _ in range(workers)]
                self._run(pool, layer, outage, every, idle)
        finally:
            for worker in pool:
                worker.stop()
            with override_settings(**_settings_on(layer.url)):
                delete_bench_rows()
            layer.kill()
            counters.stop()

    def _run(self, pool, layer, outage, every, idle):
        workers = len(pool)
        started = time.monotonic()
        _wait(lambda: WorkerHeartbeat.objects.count() == workers, "the workers' heartbeats")
        self._round_trips(10)
        # A worker starts sweeping for dead peers (one more query a round)
        # once its heartbeats have held for CQ_WORKER_TIMEOUT: both idle
        # windows come after that, so that they differ by the outage alone.
        time.sleep(max(0.0, cq_settings.WORKER_TIMEOUT + 2 - (time.monotonic() - started)))
        self._line(f"idle, Redis up: {self._idle_rate(pool, idle)}")

        layer.kill()
        killed = time.monotonic()
        _wait(lambda: _deaf_workers() == workers, "every heartbeat saying the channel is down")
        self._line(f"Redis killed; every heartbeat says so after {time.monotonic() - killed:.1f}s")
        self._line(f"idle, Redis down: {self._idle_rate(pool, idle)}")

        ids = self._trickle(outage, every)
        _wait(lambda: not _unfinished(ids), "the outage's tasks", deadline=DEADLINE)
        down_for = time.monotonic() - killed
        rows = Task.objects.filter(pk__in=ids)
        delays = [(row.started - row.submitted).total_seconds() for row in rows]
        succeeded = rows.filter(status=Task.STATUS_SUCCESS).count()
        self._line(
            f"{len(ids)} tasks delayed over {outage:.0f}s of a {down_for:.0f}s outage "
            f"({workers} workers): "
            f"{succeeded} succeeded before Redis came back; delay to start "
            f"p50 {statistics.median(delays):.2f}s, p95 {percentile(delays, 95):.2f}s, "
            f"max {max(delays):.2f}s"
        )

        restarted = metrics.PrivateRedis(port=layer.port)
        layer.process = restarted.process
        back = time.monotonic()
        _wait(lambda: _deaf_workers() == 0, "every heartbeat saying the channel answers")
        self._line(f"Redis restarted; every heartbeat says so after {time.monotonic() - back:.1f}s")
        self._round_trips(20)

    def _idle_rate(self, pool, seconds):
        """Statements per second per worker over `seconds`, in all and by
        verb, from the totals the workers publish every second (so the window
        is exact to about 1 s)."""
        time.sleep(2)  # past the last task's bookkeeping and a published total
        before = [live_totals(LIVE_HASH, worker.pid) for worker in pool]
        began = time.monotonic()
        time.sleep(seconds)
        after = [live_totals(LIVE_HASH, worker.pid) for worker in pool]
        per_second = len(pool) * (time.monotonic() - began)
        delta = sum((a - b for a, b in zip(after, before, strict=True)), Counter())
        verbs = ", ".join(
            f"{name[4:]} {count / per_second:.2f}"
            for name, count in sorted(delta.items())
            if name.startswith("sql_")
        )
        return f"{delta['statements'] / per_second:.2f} statements/s per worker ({verbs})"

    def _trickle(self, outage, every):
        """One `.delay()` every `every` seconds, on a fixed schedule."""
        ids, began = [], time.monotonic()
        count = int(outage / every)
        for i in range(count):
            pause = began + i * every - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            ids.append(noop.delay(i).pk)
        return ids

    def _round_trips(self, count):
        trips = []
        for i in range(count):
            began = time.perf_counter()
            task = noop.delay(-1 - i)
            task.wait(timeout=DEADLINE)
            if task.status != Task.STATUS_SUCCESS:
                raise CommandError(f"round trip {i}: task {task.pk} is {task.status!r}")
            trips.append((time.perf_counter() - began) * 1000)
        self._line(f"{count} round trips on doorbells: p50 {statistics.median(trips):.1f} ms")

    def _line(self, text):
        self.stdout.write(text)
        self.stdout.flush()


def _settings_on(url):
    """The channel layer and the cache on the private Redis at `url`."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"] = [{"address": url, "socket_timeout": 10}]
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = url
    return {"CHANNEL_LAYERS": layers, "CACHES": caches}


def _deaf_workers():
    return WorkerHeartbeat.objects.filter(channel_down_since__isnull=False).count()


def _unfinished(ids):
    return Task.objects.filter(pk__in=ids).exclude(status__in=Task.STATUS_DONE).count()


def _wait(predicate, what, deadline=DEADLINE):
    limit = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > limit:
            raise CommandError(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(0.1)
