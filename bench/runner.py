"""The bench run: checks, the order of scenarios, the time bound, clean-up."""

import logging
import os
import signal
import statistics
import time
from collections import defaultdict
from datetime import timedelta

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection, connections
from django.utils import timezone

from cq.conf import settings as cq_settings
from cq.models import Task, WorkerHeartbeat

from . import metrics, probes, scenarios
from .logcount import LogCounter
from .tasks import NAME
from .workers import WorkerDied

logger = logging.getLogger(__name__)

SCENARIOS = (
    "calibrate",
    "enqueue",
    "drain",
    "e2e",
    "scale",
    "latency",
    "idle",
    "stats",
    "memory",
)
# The scaling curve is run on its own, with its own worker counts (`make bench-scale`).
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "scale")


class BenchError(Exception):
    """The bench cannot run here as configured (the message says why)."""


class Bench:
    def __init__(
        self,
        n,
        reps,
        worker_counts,
        concurrency,
        latency_samples,
        idle_samples,
        memory_tasks,
        only,
        time_limit,
        metrics_url=None,
    ):
        self.n, self.reps = n, reps
        self.worker_counts, self.concurrency = worker_counts, concurrency
        self.latency_samples, self.idle_samples = latency_samples, idle_samples
        self.memory_tasks = memory_tasks
        self.only = only
        self.time_limit = time_limit
        self.metrics_url = metrics_url
        self.results = defaultdict(list)
        self.details = defaultdict(list)
        self.memory_points = []
        self.peak_rss = self.worker_log_sample = None
        self.worker_log_lines = 0
        self.live = []
        self.failure = None
        self.warnings = LogCounter()
        self.layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
        self.memory_batch = min(1000, max(1, self._capacity() // 2))

    # ---- bookkeeping the scenarios use

    def remaining(self):
        return self.deadline - time.monotonic()

    def record(self, name, value):
        self.results[name].append(value)

    def record_detail(self, name, value):
        self.details[name].append(value)

    def note_stopped(self, worker):
        if worker.peak_rss is not None:
            self.peak_rss = max(self.peak_rss or 0, worker.peak_rss)
        self.worker_log_lines += worker.log_lines
        self.worker_log_sample = self.worker_log_sample or worker.log_sample

    # ---- the run

    def run(self):
        """Run every selected scenario; the results stay on `self` even when a
        scenario fails or time runs out (`self.failure` says which)."""
        self.started = time.time()
        self.deadline = time.monotonic() + self.time_limit
        self.check()
        self.load_at_start = ", ".join(f"{load:.2f}" for load in os.getloadavg())
        self.redis_clients_at_start = probes.redis_clients_connected(probes.layer_redis_clients())
        private = None if self.metrics_url else _private_redis()
        os.environ[metrics.ENV_URL] = self.metrics_url or private.url
        os.environ[metrics.ENV_PREFIX] = f"cqbench:{os.getpid()}:"
        previous = _install_signal_handlers(self.time_limit + 60)
        try:
            scenarios.delete_bench_rows()
            with self.warnings:
                self._run_scenarios()
        except (metrics.BenchTimeout, WorkerDied) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
            _restore_signal_handlers(previous)
            self._clean_up(private)
        self.elapsed = time.time() - self.started

    def _run_scenarios(self):
        for rep in range(self.reps):
            for name, step in self._steps():
                logger.info("bench scenario=%s rep=%s", name, rep)
                self.warnings.scenario = name
                step(rep)
        if "memory" in self.only:
            self.warnings.scenario = "memory"
            scenarios.memory(self)

    def _steps(self):
        steps = []
        if "calibrate" in self.only:
            steps.append(("calibrate", lambda rep: scenarios.calibration(self, rep)))
        if "enqueue" in self.only:
            steps.append(("enqueue", lambda rep: scenarios.enqueue_rates(self, rep)))
        for kind, function in (
            ("drain", scenarios.drain),
            ("e2e", scenarios.end_to_end),
            ("scale", scenarios.scale),
        ):
            if kind in self.only:
                for count in self.worker_counts:
                    steps.append((kind, lambda rep, f=function, c=count: f(self, rep, c)))
        for kind in ("latency", "idle"):
            if kind in self.only:
                steps.append(
                    (kind, lambda rep, idle=kind == "idle": scenarios.latency(self, rep, idle))
                )
        if "stats" in self.only:
            steps.append(("stats", lambda rep: scenarios.work_per_task(self, rep)))
        return steps

    def _clean_up(self, private):
        for worker in list(self.live):
            self.live.remove(worker)
            worker.stop()
            self.note_stopped(worker)
        try:
            # An interrupt (Ctrl-C, SIGTERM) may have come in the middle of a
            # query, leaving this thread's connection unusable: start afresh.
            connections.close_all()
            scenarios.delete_bench_rows()
            metrics.client().delete(*(metrics.key(k) for k in ("done", "first", "last", "sql")))
        finally:
            if private is not None:
                private.stop()

    # ---- checks before anything is started

    def check(self):
        if self.layer is None or isinstance(self.layer, InMemoryChannelLayer):
            raise BenchError(
                f"cq's channel layer {cq_settings.CHANNEL_LAYER!r} must be shared between "
                "processes (channels-redis); the in-memory layer is not"
            )
        needed = self.backlog()
        if self._capacity() < needed:
            raise BenchError(
                f"the channel layer's capacity is {self._capacity()}, but this run queues up "
                f"to {needed} doorbells at once; raise CHANNEL_LAYERS capacity or lower --n"
            )
        if Task._meta.db_table not in connection.introspection.table_names():
            raise BenchError("cq's tables are missing: run `migrate` with these settings first")
        self._check_quiet()

    def backlog(self):
        sizes = [self.memory_batch if "memory" in self.only else 0]
        if "enqueue" in self.only:
            sizes.append(3 * self.n)
        # e2e: a producer faster than the workers queues up to N.
        if {"drain", "e2e", "scale", "stats"} & set(self.only):
            sizes.append(self.n)
        return max(sizes)

    def _check_quiet(self):
        alive_since = timezone.now() - timedelta(seconds=cq_settings.WORKER_TIMEOUT)
        alive = WorkerHeartbeat.objects.filter(seen__gte=alive_since).count()
        if alive:
            raise BenchError(
                f"{alive} cq worker(s) run against this database: they would take the "
                "bench's tasks. Stop them (or wait for their heartbeat to expire)."
            )
        busy = (
            Task.objects.filter(
                status__in=(Task.STATUS_QUEUED, Task.STATUS_RETRY, Task.STATUS_RUNNING)
            )
            .exclude(func_name=NAME)
            .count()
        )
        if busy:
            raise BenchError(
                f"{busy} task(s) are queued or running in this database: the bench's "
                "workers would run them. Benchmark on a quiet database."
            )

    def _capacity(self):
        return getattr(self.layer, "capacity", None) or 0

    # ---- results

    def summary(self, name):
        """(median, min, max) of a measurement, or None."""
        values = [v for v in self.results.get(name, []) if v is not None]
        if not values:
            return None
        return statistics.median(values), min(values), max(values)


def _private_redis():
    try:
        return metrics.PrivateRedis()
    except (FileNotFoundError, RuntimeError) as exc:
        raise BenchError(str(exc)) from exc


def _install_signal_handlers(alarm_after):
    # SIGTERM and the alarm unwind the stack like Ctrl-C does, so every
    # `finally` runs and every worker is stopped.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM,)}
    previous[signal.SIGALRM] = signal.signal(
        signal.SIGALRM, lambda signum, frame: _raise_timeout(alarm_after)
    )
    signal.alarm(int(alarm_after))
    return previous


def _raise_timeout(seconds):
    raise metrics.BenchTimeout(f"the bench ran for more than {seconds:.0f}s")


def _restore_signal_handlers(previous):
    for signum, handler in previous.items():
        signal.signal(signum, handler)
