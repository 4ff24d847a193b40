"""Prometheus metrics: what an operator alerts on, in the text exposition format.

Serve them with the view (`path("cq/metrics", cq.metrics.view)` in urls.py, on
a path only the scraper reaches) or print them with `cq_status --format
prometheus`. Counts of active tasks read the index of active rows; the last
hour's outcomes and durations read the rows finished in that hour.
"""

from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.http import HttpResponse
from django.utils import timezone

from . import status as cq_status
from .conf import settings as cq_settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WINDOW = timedelta(hours=1)


def view(request) -> HttpResponse:
    """The metrics as a Prometheus scrape target."""
    return HttpResponse(render(), content_type=CONTENT_TYPE)


def render(now=None) -> str:
    """Every metric, as Prometheus text."""
    from .models import Task

    now = now or timezone.now()
    lines = []
    lines += _active_tasks(Task)
    lines += _queues(now)
    lines += _outcomes(Task, now)
    lines += _durations(Task, now)
    lines += _workers(now)
    return "\n".join(lines) + "\n"


def _active_tasks(model):
    return _family(
        "cq_tasks",
        "gauge",
        "Active tasks by queue and status (queued, running, waiting, retry, pending).",
        _by_queue_and_status(model, model.objects.filter(status__in=model.STATUS_ACTIVE)),
    )


def _by_queue_and_status(model, rows):
    """Samples of `rows` counted by queue and status, labelled by the status's name."""
    labels = dict(model.Status.choices)
    counts = rows.values_list("queue", "status").annotate(n=Count("pk")).order_by("queue", "status")
    return [({"queue": queue, "status": labels[letter].lower()}, n) for queue, letter, n in counts]


def _queues(now):
    rows = cq_status._queues()
    return _family(
        "cq_queue_oldest_waiting_seconds",
        "gauge",
        "Age of the oldest due QUEUED task of each queue.",
        [
            ({"queue": row.queue}, max((now - row.oldest).total_seconds(), 0))
            for row in rows
            if row.oldest is not None
        ],
    )


def _outcomes(model, now):
    finished = model.objects.filter(status__in=model.STATUS_DONE, finished__gte=now - WINDOW)
    return _family(
        "cq_tasks_finished_last_hour",
        "gauge",
        "Tasks that reached a final status in the last hour, by queue and status.",
        _by_queue_and_status(model, finished),
    )


def _durations(model, now):
    ran = ExpressionWrapper(F("finished") - F("started"), output_field=DurationField())
    rows = (
        model.objects.filter(finished__gte=now - WINDOW, started__isnull=False)
        .values("func_name")
        .annotate(count=Count("pk"), total=Sum(ran), longest=Max(ran))
        .order_by("func_name")
    )
    rows = list(rows)
    # Gauges over a sliding hour, not a summary: its sum and count would fall
    # as the hour slides, and Prometheus' rate() reads a fall as a reset.
    lines = _family(
        "cq_task_run_seconds_last_hour",
        "gauge",
        "Run time of the tasks that finished in the last hour, added up, by function.",
        [({"function": row["func_name"]}, _seconds(row["total"])) for row in rows],
    )
    lines += _family(
        "cq_task_runs_last_hour",
        "gauge",
        "Tasks that finished in the last hour after running, by function.",
        [({"function": row["func_name"]}, row["count"]) for row in rows],
    )
    lines += _family(
        "cq_task_longest_run_seconds_last_hour",
        "gauge",
        "Longest run among the tasks that finished in the last hour, by function.",
        [({"function": row["func_name"]}, _seconds(row["longest"])) for row in rows],
    )
    return lines


def _workers(now):
    from .models import WorkerHeartbeat

    cutoff = now - timedelta(seconds=cq_settings.WORKER_TIMEOUT)
    beats = list(WorkerHeartbeat.objects.order_by("name"))
    lines = _family(
        "cq_worker_up",
        "gauge",
        "1 while the worker's heartbeat is younger than CQ_WORKER_TIMEOUT, else 0.",
        [({"worker": beat.name}, int(beat.seen >= cutoff)) for beat in beats],
    )
    lines += _family(
        "cq_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since the worker's last heartbeat.",
        [({"worker": beat.name}, max((now - beat.seen).total_seconds(), 0)) for beat in beats],
    )
    lines += _family(
        "cq_workers_alive",
        "gauge",
        "Workers whose heartbeat is younger than CQ_WORKER_TIMEOUT.",
        [({}, sum(beat.seen >= cutoff for beat in beats))],
    )
    return lines


def _family(name, kind, help_text, samples):
    return [
        f"# HELP {name} {help_text}",
        f"# TYPE {name} {kind}",
        *(_sample(name, labels, value) for labels, value in samples),
    ]


def _sample(name, labels, value):
    if labels:
        pairs = ",".join(f'{key}="{_escape(str(text))}"' for key, text in labels.items())
        name = f"{name}{{{pairs}}}"
    return f"{name} {float(value):g}" if isinstance(value, float) else f"{name} {value}"


def _escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _seconds(duration):
    return duration.total_seconds() if duration is not None else 0.0
