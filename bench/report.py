"""The one table the bench prints, with the facts needed to read it."""

import os
import platform
from importlib import metadata

from django.conf import settings
from django.db import connection

import cq
from cq.conf import settings as cq_settings

from . import probes
from .limits import BATCH
from .scenarios import TRANSACTION_SIZE, batch_rows, calibration_count

MIB = 1024 * 1024
# The calibration row each cq rate is divided by, in the "of limit" column.
LIMITS = {"insert": "calibrate.insert", "batch": "calibrate.batch"}


def render(bench):
    lines = [
        _title(bench),
        "",
        "| measurement | result | unit | of limit |",
        "|---|---|---|---|",
    ]
    for label, value, unit, *of_limit in _rows(bench):
        lines.append(f"| {label} | {value} | {unit} | {''.join(of_limit)} |")
    lines.append("")
    lines.extend(_footer(bench))
    return "\n".join(lines)


def _title(bench):
    db = connection.settings_dict
    return (
        f"cq benchmark: {connection.vendor} ({db['NAME']}), "
        f"N={bench.n}, median (min–max) of {bench.reps} repetition(s), "
        f"worker processes {'/'.join(map(str, bench.worker_counts))} × concurrency "
        f"{bench.concurrency}, {bench.elapsed:.0f} s"
    )


def _rows(bench):
    selected = set(bench.only)
    sections = [
        ("calibrate", _calibration_rows),
        ("drain", _drain_rows),
        ("e2e", _end_to_end_rows),
        ("scale", _scale_rows),
        ("latency", lambda b: _latency_rows(b, "busy")),
        ("idle", lambda b: _latency_rows(b, "idle")),
        ("stats", _stats_rows),
    ]
    rows = []
    for name, section in sections:
        if name in selected:
            rows += _flag_warnings(bench, name, section(bench))
        if name == "calibrate" and "enqueue" in selected:
            # The enqueue rows are flagged one by one, each for its own method.
            rows += _enqueue_rows(bench)
    rows += [
        (
            "cq warnings logged by the producer (e.g. doorbell sends that failed)",
            f"{bench.warnings.total():,}",
            "records",
        ),
        (
            "worker log lines (workers log at WARNING and above)",
            f"{bench.worker_log_lines:,}",
            "lines",
        ),
        ("peak worker RSS (VmHWM, any worker of the run)", _mib(bench.peak_rss), "MiB"),
    ]
    if "memory" in selected:
        rows += _memory_rows(bench)
    return rows


def _flag_warnings(bench, scenario, rows):
    """Mark the results of a scenario during which cq logged warnings: a lost
    doorbell makes its task wait for the sweeper, so the row measured recovery."""
    warnings = bench.warnings.total(scenario)
    if not warnings:
        return rows
    return [(label, f"{value} ⚠{warnings:,}", unit, *rest) for label, value, unit, *rest in rows]


def _enqueue_rows(bench):
    # Only `.delay()` outside a transaction has a limit: the other two commit
    # many rows at once, which a one-row-per-commit ceiling does not bound.
    methods = [
        ("delay", ".delay() from sync code, outside a transaction", "insert"),
        ("atomic", f".delay() inside transactions of {TRANSACTION_SIZE}", None),
        ("delay_many", f"fn.delay_many() bulk enqueue of {bench.n}", None),
    ]
    rows = []
    for method, label, limit in methods:
        name = f"enqueue.{method}"
        row = (label, _rate(bench, name), "tasks/s", _of_limit(bench, name, limit))
        rows += _flag_warnings(bench, name, [row])
    return rows


def _calibration_rows(bench):
    count = calibration_count(bench)
    return [
        (
            f"calibration: ORM alone, INSERT + 2 UPDATEs autocommit, {count} rows",
            _rate(bench, "calibrate.orm"),
            "lifecycles/s",
        ),
        (
            f"calibration: channel layer alone, {count} sends",
            _rate(bench, "calibrate.send"),
            "messages/s",
        ),
        (
            f"calibration: channel layer alone, {count} receives",
            _rate(bench, "calibrate.receive"),
            "messages/s",
        ),
        (
            f"calibration: insert limit, raw 1-row INSERT per autocommit transaction, {count} rows",
            _rate(bench, "calibrate.insert"),
            "tasks/s",
        ),
        (
            f"calibration: batch limit, raw claim + finish UPDATEs of {BATCH} rows each, "
            f"{batch_rows(bench)} rows",
            _rate(bench, "calibrate.batch"),
            "tasks/s",
        ),
    ]


def _drain_rows(bench):
    return [
        (
            f"drain, queue pre-filled, {_procs(count)} (first→last completion)",
            _rate(bench, f"drain.{count}"),
            "tasks/s",
            _of_limit(bench, f"drain.{count}", "batch"),
        )
        for count in bench.worker_counts
    ]


def _end_to_end_rows(bench):
    rows = []
    for count in bench.worker_counts:
        rows.append(
            (
                f"end to end, enqueued while {_procs(count)} drain (first enqueue→last completion)",
                _rate(bench, f"e2e.{count}"),
                "tasks/s",
                _of_limit(bench, f"e2e.{count}", "batch"),
            )
        )
        rows.append(
            (
                f"  .delay() rate meanwhile, {_procs(count)}",
                _rate(bench, f"e2e_enqueue.{count}"),
                "tasks/s",
                _of_limit(bench, f"e2e_enqueue.{count}", "insert"),
            )
        )
        cpu = ", ".join(
            f"{group} {_num(bench, f'e2e_cpu.{count}.{group}', short=True)}"
            for group in ("producer", "workers", "postgres", "redis")
        )
        rows.append(
            (
                f"  CPU per task, {_procs(count)}: {cpu}; total",
                _num(bench, f"e2e_cpu.{count}.total"),
                "ms",
            )
        )
    return rows


def _scale_rows(bench):
    rows = []
    for count in bench.worker_counts:
        rows.append(
            (
                f"scaling, {_procs(count)} warmed up, N queued in bulk (first enqueue→last "
                "completion)",
                _rate(bench, f"scale.{count}"),
                "tasks/s",
                _of_limit(bench, f"scale.{count}", "batch"),
            )
        )
        rows.append(
            (
                f"  database CPU per task, {_procs(count)} (every postgres process)",
                _num(bench, f"scale_cpu.{count}.postgres"),
                "ms",
            )
        )
        rows.append(
            (
                f"  workers / Redis CPU per task, {_procs(count)}",
                f"{_num(bench, f'scale_cpu.{count}.workers', short=True)} / "
                f"{_num(bench, f'scale_cpu.{count}.redis', short=True)}",
                "ms",
            )
        )
        if bench.results.get(f"scale_commits.{count}"):
            rows.append(
                (
                    f"  PostgreSQL commits per task, {_procs(count)} (pg_stat_database)",
                    _num(bench, f"scale_commits.{count}"),
                    "per task",
                )
            )
        if bench.results.get(f"scale_connections.{count}"):
            rows.append(
                (
                    f"  PostgreSQL connections at the end, {_procs(count)} (bench's own included)",
                    _rate(bench, f"scale_connections.{count}"),
                    "connections",
                )
            )
    return rows


def _latency_rows(bench, kind):
    if kind == "busy":
        text, samples = "busy worker (back to back)", bench.latency_samples
    else:
        text, samples = "idle worker (250–750 ms pause before each)", bench.idle_samples
    return [
        (
            f"round trip .delay()→wait(), {text}, p50",
            _ms(bench, f"latency.{kind}.p50"),
            f"ms ({samples}/rep)",
        ),
        (f"round trip .delay()→wait(), {text}, p99", _ms(bench, f"latency.{kind}.p99"), "ms"),
        (f"  .delay()→task body ran, {kind}, p50", _ms(bench, f"latency.{kind}.body"), "ms"),
    ]


def _stats_rows(bench):
    rows = []
    if bench.results.get("pg.xact_commit"):
        rows += [
            (
                "PostgreSQL commits per task (pg_stat_database)",
                _num(bench, "pg.xact_commit"),
                "per task",
            ),
            (
                "PostgreSQL rows inserted / updated / deleted per task",
                " / ".join(
                    _num(bench, f"pg.tup_{k}", short=True)
                    for k in ("inserted", "updated", "deleted")
                ),
                "per task",
            ),
        ]
    rows += [
        (
            "SQL statements per task, producer + worker (counted)",
            f"{_num(bench, 'sql.producer.statements', short=True)} + "
            f"{_num(bench, 'sql.worker.statements', short=True)}",
            "per task",
        ),
        ("  by kind", _top(bench.details.get("sql.verbs")), "per task"),
        (
            "DB transactions per task, producer + worker (counted)",
            f"{_num(bench, 'sql.producer.transactions', short=True)} + "
            f"{_num(bench, 'sql.worker.transactions', short=True)}",
            "per task",
        ),
        (
            "Redis commands per task (layer's Redis, INFO commandstats)",
            _num(bench, "redis.commands"),
            "per task",
        ),
        ("  top commands", _top(bench.details.get("redis.top")), "per task"),
    ]
    return rows


def _memory_rows(bench):
    rows = []
    points = bench.memory_points
    for tasks, rss in points:
        rows.append((f"worker RSS after {tasks:,} tasks", _mib(rss), "MiB"))
    if len(points) == 2 and points[0][1] and points[1][1]:
        growth = (points[1][1] - points[0][1]) / points[0][1] * 100
        rows.append(
            (f"  growth from {points[0][0]:,} to {points[1][0]:,} tasks", f"{growth:+.1f}", "%")
        )
    elif not points:
        rows.append(("worker RSS after early / all tasks", "–", "MiB"))
    return rows


def _footer(bench):
    layer = settings.CHANNEL_LAYERS[cq_settings.CHANNEL_LAYER]
    config = layer.get("CONFIG", {})
    hosts = config.get("hosts", [])
    timeouts = {
        h.get("socket_timeout", "default 5 s") if isinstance(h, dict) else "default 5 s"
        for h in hosts
    }
    clients = probes.layer_redis_clients()
    servers = ", ".join(f"{host}:{port}" for host, port in clients) or "?"
    notes = [
        "Notes:",
        f"- settings {os.environ.get('DJANGO_SETTINGS_MODULE')}; channel layer "
        f"{layer['BACKEND'].rsplit('.', 1)[-1]} on {servers}, capacity "
        f"{config.get('capacity', 100)}, expiry {config.get('expiry', 60)} s, socket_timeout "
        f"{', '.join(map(str, timeouts))}; CONN_MAX_AGE "
        f"{connection.settings_dict.get('CONN_MAX_AGE')}; CQ_HOUSEKEEPING_INTERVAL "
        f"{cq_settings.HOUSEKEEPING_INTERVAL} s.",
        "- The task is a no-op that counts its completion on a separate Redis (no database "
        "polling); rates and latencies include cq's bookkeeping (insert, claim, finish).",
        "- Enqueue rates: N calls with no worker running, doorbell sends flushed. "
        "Latency: per-repetition p50/p99 of sequential round trips, the first ones discarded.",
        "- of limit: the median rate over the median of its calibration limit, measured in "
        "the same run with raw SQL on cq's table (bench/limits.py). insert: one thread, one "
        "row per autocommit INSERT, the ceiling of .delay() outside a transaction. batch: "
        f"one UPDATE … RETURNING claims the {BATCH} oldest QUEUED rows"
        f"{' (FOR UPDATE SKIP LOCKED)' if connection.vendor == 'postgresql' else ''}, one "
        "UPDATE finishes them, each its own transaction (cq claims and finishes one row per "
        "task).",
        "- Work per task: one pre-filled run with one worker, enqueue included, worker boot, "
        "heartbeats and stop included. Redis counts are for the whole server: other clients' "
        f"commands count too ({bench.redis_clients_at_start} clients were connected at start). "
        "SQL counted in-process (execute wrappers in the producer and the workers); not "
        "counted: what the driver sends by itself (psycopg's BEGIN, init_command PRAGMAs, "
        "connection set-up) and rollbacks. PostgreSQL counts read-only transactions as commits.",
        f"- Machine: {os.cpu_count()} CPUs, load average {bench.load_at_start} at start; the "
        "producer, workers, Redis and the database share it, so numbers are noisy.",
        f"- Versions: Python {platform.python_version()}, "
        + ", ".join(f"{p} {_version(p)}" for p in ("Django", "channels", "channels-redis", "redis"))
        + f", cq {cq.__version__}, {connection.vendor} {_server_version()}.",
    ]
    for event, count in bench.warnings.counts.most_common(3):
        notes.append(f"- ⚠ WARNING x{count:,} in the producer, scenario {event}")
    if bench.worker_log_sample:
        notes.append(f"- first worker log line: {bench.worker_log_sample}")
    if bench.failure:
        notes.append(f"- INCOMPLETE: {bench.failure}")
    return notes


def _server_version():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            return cursor.fetchone()[0]
        if connection.vendor != "postgresql":
            return "?"
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW autovacuum")
        return f"{version} (autovacuum {cursor.fetchone()[0]}; the bench vacuums its tables)"


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _procs(count):
    return f"{count} worker process{'es' if count != 1 else ''}"


def _format(summary, spec):
    if summary is None:
        return "–"
    median, low, high = summary
    if low == high:
        return format(median, spec)
    return f"{median:{spec}} ({low:{spec}}–{high:{spec}})"


def _rate(bench, name):
    return _format(bench.summary(name), ",.0f")


def _ms(bench, name):
    return _format(bench.summary(name), ".2f")


def _num(bench, name, short=False):
    summary = bench.summary(name)
    if short and summary is not None:
        return format(summary[0], ".2f")
    return _format(summary, ".2f")


def _of_limit(bench, name, limit):
    """`name`'s median as a percentage of the median of its limit, or ""."""
    if limit is None:
        return ""
    rate, ceiling = bench.summary(name), bench.summary(LIMITS[limit])
    if rate is None or ceiling is None or not ceiling[0]:
        return ""
    percent = rate[0] / ceiling[0] * 100
    # A decimal below 10 %: drain rates sit there, and 2 % vs 3 % says too little.
    return f"{percent:.{0 if percent >= 10 else 1}f}% of {limit}"


def _mib(value):
    return "–" if value is None else f"{value / MIB:.1f}"


def _top(per_rep, count=8):
    """The largest entries of per-repetition {name: per task} dicts, by median."""
    if not per_rep:
        return "–"
    names = {name for counts in per_rep for name in counts}
    medians = {}
    for name in names:
        values = sorted(counts.get(name, 0) for counts in per_rep)
        medians[name] = values[len(values) // 2]
    top = sorted(medians.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {value:.2f}" for name, value in top if value >= 0.005)
