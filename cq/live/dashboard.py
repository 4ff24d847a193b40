"""The dashboard's figures: what `cq_status` shows (cq.status), plus the
throughput of the last hour and the tasks each worker runs now."""

from django.utils import timezone

from .. import status as cq_status
from .permissions import staff_with_view_permission

# Running tasks listed per worker on the dashboard.
MOST_RUNNING = 20


def may_view(user) -> bool:
    """The dashboard shows every queue: staff who may view tasks, whatever
    CQ_LIVE_PERMISSION says about single tasks."""
    return staff_with_view_permission(user, None)


def figures(now=None) -> dict:
    """cq_status's JSON (`cq_status --json`), with `succeeded_last_hour` and,
    in each worker, `tasks`: the tasks it runs now."""
    from ..models import Task

    now = now or timezone.now()
    data = cq_status.as_dict(cq_status.collect(now))
    data["succeeded_last_hour"] = Task.objects.filter(
        status=Task.STATUS_SUCCESS, finished__gte=now - cq_status.FAILURE_WINDOW
    ).count()
    running = _running_by_worker(Task)
    for worker in data["workers"]:
        worker["tasks"] = running.get(worker["name"], [])
    return data


def _running_by_worker(model):
    rows = (
        model.objects.filter(status=model.STATUS_RUNNING)
        .order_by("started")
        .values_list("worker", "pk", "func_name", "started", "progress")
    )
    running = {}
    for worker, pk, func_name, started, progress in rows[:500]:
        tasks = running.setdefault(worker, [])
        if len(tasks) < MOST_RUNNING:
            tasks.append(
                {
                    "id": str(pk),
                    "func_name": func_name,
                    "started": started.isoformat() if started else None,
                    "progress": progress,
                }
            )
    return running
