"""A task tree's current state, as the browser receives it (JSON-ready dicts).

The first message a watcher gets, and the one it gets again after each status
change in the tree: the task, its subtasks' counts by status, the progress
of the whole (`percent`) and, in the first message, the tree's log lines.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count

from .. import logs as task_logs
from ..progress import percent as report_percent

# Subtasks listed one by one in a state; the counts cover them all.
MOST_SUBTASKS = 50
# Log lines in the first message; the newest are kept.
MOST_LOG_LINES = 200
# Characters of a result shown live (the admin shows the whole).
RESULT_PREVIEW = 500


def snapshot(model, task_id, with_logs=False, logs_when_done=False) -> dict | None:
    """The state of `task_id`'s tree as seen from that task; None if it is
    gone. With `logs` if `with_logs`, or if `logs_when_done` and it is done."""
    task = model.objects.filter(pk=task_id).first()
    if task is None:
        return None
    subtasks = _subtasks(task)
    counts = subtask_counts(task)
    state = {
        "task": task_state(task),
        "counts": counts,
        "subtasks": [task_state(sub) for sub in subtasks[:MOST_SUBTASKS]],
        "percent": tree_percent(task, counts),
    }
    if with_logs or (logs_when_done and task.is_done):
        state["logs"] = tree_logs(task)
    return state


def task_state(task) -> dict:
    """One task's fields a watcher shows."""
    return {
        "id": str(task.pk),
        "top_id": str(task.top_id),
        "parent_id": str(task.parent_id) if task.parent_id else None,
        "func_name": task.func_name,
        "status": task.status,
        "status_label": task.get_status_display(),
        "done": task.is_done,
        "queue": task.queue,
        "worker": task.worker,
        "retries": task.retries,
        "progress": task.progress,
        "submitted": _iso(task.submitted),
        "started": _iso(task.started),
        "finished": _iso(task.finished),
        "error": task.error,
        "result": _preview(task.result),
    }


def subtask_counts(task) -> dict:
    """{status label: count} of the tasks under `task`: a top-level task
    counts its whole tree, a subtask its own subtasks."""
    rows = (
        _under(task).values("status").annotate(n=Count("pk")).order_by().values_list("status", "n")
    )
    labels = dict(type(task).Status.choices)
    return {labels.get(status, status): n for status, n in rows}


def tree_percent(task, counts) -> float | None:
    """0..100 for the progress bar, or None when there is nothing to measure.

    Done: 100 (whatever the outcome; the status says how it ended). Running
    with a reported total: its own report. With subtasks: the share of them done."""
    if task.is_done:
        return 100.0
    if task.status == task.STATUS_RUNNING and report_percent(task.progress) is not None:
        return report_percent(task.progress)
    total = sum(counts.values())
    if total:
        finished = sum(n for label, n in counts.items() if label in _done_labels(task))
        return round(100.0 * finished / total, 1)
    return report_percent(task.progress)


def tree_logs(task) -> list:
    """The tree's log lines: those stored on the top-level row, then those
    still buffered (a tree that runs), the newest MOST_LOG_LINES.

    The buffer is read before the row: cq.logs.store commits the lines onto
    the row before it empties the buffer, so each line is in one of the two
    reads, whenever the tree finishes (in both, for a moment: kept once)."""
    model = type(task)
    try:
        buffered = task_logs.buffered(task.top_id)
    except Exception:  # noqa: BLE001 - a cache down costs the live lines, not the page
        buffered = []
    stored = model.objects.filter(pk=task.top_id).values_list("logs", flat=True).first() or []
    on_row = {task_logs.line_key(line) for line in stored}
    later = [line for line in buffered if task_logs.line_key(line) not in on_row]
    return [*stored, *later][-MOST_LOG_LINES:]


def _under(task):
    model = type(task)
    if task.parent_id is None:
        return model.objects.filter(root_id=task.pk)
    return model.objects.filter(parent_id=task.pk)


def _subtasks(task):
    return list(type(task).objects.filter(parent_id=task.pk).order_by("submitted"))


def _done_labels(task):
    labels = dict(type(task).Status.choices)
    return {labels[status] for status in task.STATUS_DONE}


def _iso(moment):
    return moment.isoformat() if moment else None


def _preview(result):
    if result is None:
        return None
    text = json.dumps(result, cls=DjangoJSONEncoder)
    return text if len(text) <= RESULT_PREVIEW else text[:RESULT_PREVIEW] + "…"
