"""Printing what the demo's tasks did: their tree, statuses, results, timings, logs."""

import uuid

from django.db.models import Q

from cq.models import Task

MARKS = {
    Task.STATUS_SUCCESS: "ok",
    Task.STATUS_FAILURE: "FAILED",
    Task.STATUS_INCOMPLETE: "INCOMPLETE",
    Task.STATUS_REVOKED: "revoked",
}


def print_tree(write, task, depth=0):
    """One line per task, its subtasks and chained tasks indented below it."""
    indent = "    " * depth
    arrow = "-> " if task.previous_id and depth else ""
    write(f"{indent}{arrow}{_describe(task)}")
    children = Task.objects.filter(Q(parent=task) | Q(previous=task, parent__isnull=True)).order_by(
        "submitted"
    )
    for child in children:
        print_tree(write, child, depth + 1)


def print_logs(write, task):
    write(f"  log of {task.func_name} ({len(task.logs)} lines, from the whole tree):")
    origins = dict(Task.objects.filter(Q(pk=task.pk) | Q(root=task)).values_list("pk", "func_name"))
    for line in task.logs:
        origin = origins.get(uuid.UUID(line["origin"]), line.get("task", "?")).rsplit(".", 1)[-1]
        clock = line["timestamp"][11:23]
        write(f"    {clock} {line['level']:<7} {origin:<12} {line['message']}")


def _describe(task):
    status = MARKS.get(task.status, task.get_status_display())
    name = task.func_name.rsplit(".", 1)[-1]
    args = ", ".join(_short(arg) for arg in task.args)
    seconds = (
        (task.finished - task.started).total_seconds() if task.started and task.finished else None
    )
    timing = f"{seconds * 1000:.0f} ms" if seconds is not None else "-"
    text = f"[{status}] {name}({args}) = {_short(task.result, 60)}  [{timing}"
    text += f", retries {task.retries}" if task.retries else ""
    text += f", worker {task.worker}]" if task.worker else "]"
    return text + (f"  error: {task.error}" if task.error else "")


def _short(value, width=24):
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
