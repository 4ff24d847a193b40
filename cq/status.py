"""What an operator wants to know first when "tasks are stuck" (`cq_status`).

`collect()` reads the database and the channel; `render()` turns that into text,
`as_dict()` into the JSON of `cq_status --json` (for scripts and monitoring).
Only active statuses are counted: counting finished rows would scan the table.
"""

from dataclasses import dataclass, field
from datetime import UTC, timedelta

from django.db.models import Count, Max, Min
from django.utils import timezone
from redis.exceptions import RedisError

from . import channel
from .conf import settings as cq_settings
from .models import Task, WorkerHeartbeat

FAILURE_WINDOW = timedelta(hours=1)


@dataclass
class WorkerRow:
    name: str
    running: int
    seen: object = None  # last heartbeat; None: no heartbeat row
    concurrency: int | None = None
    alive: bool = False
    channel_down_since: object = None  # when Redis stopped answering it; None: it answers


@dataclass
class QueueRow:
    queue: str
    queued: int  # QUEUED and due
    running: int
    oldest: object = None  # `submitted` of its oldest due QUEUED row
    priorities: tuple = ()  # (lowest, highest) priority waiting


@dataclass
class Status:
    now: object
    counts: dict  # status letter -> count, active statuses only
    oldest_queued: object  # `submitted` of the oldest QUEUED row, or None
    workers: list
    failures: int  # final errors in the last FAILURE_WINDOW
    recent_failures: list = field(default_factory=list)  # newest first
    channel: object = None  # channel.ChannelState, or None
    channel_problem: str = ""
    queues: list = field(default_factory=list)


def collect(now=None, failures_shown=5):
    now = now or timezone.now()
    active = Task.objects.filter(status__in=Task.STATUS_ACTIVE)
    counts = dict(active.values_list("status").annotate(n=Count("pk")).order_by())
    failed = Task.objects.filter(status__in=Task.STATUS_ERROR, finished__gte=now - FAILURE_WINDOW)
    state, problem = _channel_state()
    return Status(
        now=now,
        counts=counts,
        # Due rows only: a countdown for tomorrow is not "waiting".
        oldest_queued=Task.objects.filter(
            status=Task.STATUS_QUEUED, run_after__isnull=True
        ).aggregate(oldest=Min("submitted"))["oldest"],
        workers=_workers(now),
        failures=failed.count(),
        recent_failures=list(failed.order_by("-finished")[:failures_shown]),
        channel=state,
        channel_problem=problem,
        queues=_queues(),
    )


def _queues():
    """Per queue: its due QUEUED rows (how many, the oldest, their priorities)
    and its RUNNING ones; only queues with such rows are listed."""
    waiting = (
        Task.objects.filter(status=Task.STATUS_QUEUED, run_after__isnull=True)
        .values("queue")
        .annotate(n=Count("pk"), oldest=Min("submitted"), low=Min("priority"), high=Max("priority"))
        .order_by()
    )
    rows = {
        row["queue"]: QueueRow(row["queue"], row["n"], 0, row["oldest"], (row["low"], row["high"]))
        for row in waiting
    }
    running = (
        Task.objects.filter(status=Task.STATUS_RUNNING)
        .values_list("queue")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for queue, count in running:
        rows.setdefault(queue, QueueRow(queue, 0, 0)).running = count
    return [rows[name] for name in sorted(rows)]


def _workers(now):
    running = dict(
        Task.objects.filter(status=Task.STATUS_RUNNING)
        .values_list("worker")
        .annotate(n=Count("pk"))
        .order_by()
    )
    cutoff = now - timedelta(seconds=cq_settings.WORKER_TIMEOUT)
    rows = [
        WorkerRow(
            name=beat.name,
            running=running.pop(beat.name, 0),
            seen=beat.seen,
            concurrency=beat.concurrency,
            alive=beat.seen >= cutoff,
            channel_down_since=beat.channel_down_since,
        )
        for beat in WorkerHeartbeat.objects.order_by("name")
    ]
    # RUNNING rows whose worker has no heartbeat row (or, with "", none at all).
    rows += [WorkerRow(name=name, running=count) for name, count in sorted(running.items())]
    return rows


def _channel_state():
    try:
        state = channel.inspect()
    except RedisError as exc:
        return None, f"unreachable ({exc})"
    if state is None:
        return None, "depth unknown (not a channels-redis layer)"
    return state, ""


def render(status):
    lines = [f"cq status at {_clock(status.now)}", "", "Tasks by status (active only):"]
    for letter, label in Task.STATUS_CHOICES:
        if letter in Task.STATUS_ACTIVE:
            lines.append(f"  {label:<10} {status.counts.get(letter, 0):>8}")
    if status.oldest_queued is not None:
        lines.append(f"  oldest queued task waits for {_age(status.now, status.oldest_queued)}")
    lines += _render_queues(status)
    lines += ["", _render_channel(status), ""]
    lines += _render_workers(status)
    lines += ["", f"Failures in the last hour: {status.failures}"]
    for task in status.recent_failures:
        error = (task.error.splitlines() or [""])[0][:120]
        lines.append(
            f"  {_clock(task.finished)}  {task.get_status_display():<10} "
            f"{task.func_name}  {task.pk}  {error}"
        )
    return "\n".join(lines) + "\n"


def _render_queues(status):
    if not status.queues:
        return []
    lines = ["", "Queues (due tasks waiting, running):"]
    for row in status.queues:
        line = f"  {row.queue:<20} waiting {row.queued:>7}  running {row.running:>5}"
        if row.oldest is not None:
            low, high = row.priorities
            span = f"{low}" if low == high else f"{low}..{high}"
            line += f"  oldest waits {_age(status.now, row.oldest)}, priority {span}"
        lines.append(line)
    return lines


def _render_channel(status):
    name = cq_settings.CHANNEL
    if status.channel is None:
        return f"Channel {name}: {status.channel_problem}"
    state = status.channel
    return f"Channel {name}: {state.depth} doorbells waiting (capacity {state.capacity})"


def _render_workers(status):
    alive = sum(1 for row in status.workers if row.alive)
    lines = [f"Workers: {alive} alive, {len(status.workers) - alive} not"]
    for row in status.workers:
        if row.seen is None:
            state = "no heartbeat" if row.name else "no worker name (stock runworker)"
            lines.append(f"  {row.name or '-':<40} {state:<28} running {row.running}")
            continue
        state = "alive" if row.alive else "DEAD"
        line = (
            f"  {row.name:<40} {state:<5} last heartbeat {_age(status.now, row.seen):>9} ago"
            f"  running {row.running}/{row.concurrency}"
        )
        if row.channel_down_since is not None:
            # Alive by its heartbeat (the database) but deaf: Redis does not answer it.
            line += f"  channel unreachable for {_age(status.now, row.channel_down_since)}"
        lines.append(line)
    return lines


def as_dict(status):
    """What `render()` shows, as plain JSON values: ISO 8601 times in UTC and,
    for monitoring thresholds, ages in whole seconds (null when there is none)."""
    labels = dict(Task.STATUS_CHOICES)
    channel_state = status.channel
    return {
        "at": _iso(status.now),
        "tasks": {
            labels[letter].lower(): status.counts.get(letter, 0)
            for letter, _ in Task.STATUS_CHOICES
            if letter in Task.STATUS_ACTIVE
        },
        "oldest_queued_seconds": _seconds(status.now, status.oldest_queued),
        "queues": [
            {
                "queue": row.queue,
                "waiting": row.queued,
                "running": row.running,
                "oldest_seconds": _seconds(status.now, row.oldest),
                "priority_low": row.priorities[0] if row.priorities else None,
                "priority_high": row.priorities[1] if row.priorities else None,
            }
            for row in status.queues
        ],
        "channel": {
            "name": cq_settings.CHANNEL,
            "depth": channel_state.depth if channel_state else None,
            "capacity": channel_state.capacity if channel_state else None,
            "problem": status.channel_problem,
        },
        "workers": [_worker_dict(status.now, row) for row in status.workers],
        "workers_alive": sum(1 for row in status.workers if row.alive),
        "failures_last_hour": status.failures,
        "recent_failures": [
            {
                "id": str(task.pk),
                "func_name": task.func_name,
                "status": task.get_status_display().lower(),
                "finished": _iso(task.finished),
                "error": (task.error.splitlines() or [""])[0],
            }
            for task in status.recent_failures
        ],
    }


def _worker_dict(now, row):
    return {
        "name": row.name,
        "alive": row.alive,
        "last_heartbeat": _iso(row.seen),
        "heartbeat_age_seconds": _seconds(now, row.seen),
        "running": row.running,
        "concurrency": row.concurrency,
        # Alive by its heartbeat but deaf: Redis has not answered it for this long.
        "channel_down_seconds": _seconds(now, row.channel_down_since),
    }


def _iso(moment):
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _seconds(now, moment):
    return None if moment is None else max(int((now - moment).total_seconds()), 0)


def _clock(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(now, moment):
    seconds = _seconds(now, moment)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"
