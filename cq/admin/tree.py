"""A task's tree on its admin page: the top-level task, its subtasks, their
chains, each with its status, timings and result or error, linked."""

import re

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

# Tasks drawn in one tree; a bigger one links the rest through the list.
MOST_NODES = 200
# Status letter -> colour of its badge (final errors red, success green).
COLOURS = {
    "P": "#6b7280",
    "Y": "#b45309",
    "Q": "#6b7280",
    "R": "#2563eb",
    "W": "#7c3aed",
    "S": "#15803d",
    "F": "#dc2626",
    "I": "#dc2626",
    "L": "#dc2626",
    "E": "#92400e",
}
LEVEL_COLOURS = {
    "DEBUG": "#6b7280",
    "WARNING": "#b45309",
    "ERROR": "#dc2626",
    "CRITICAL": "#dc2626",
}
NODE_FIELDS = (
    "id",
    "func_name",
    "status",
    "parent_id",
    "root_id",
    "previous_id",
    "submitted",
    "started",
    "finished",
    "error",
)
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def badge(task):
    """The status, coloured."""
    return format_html(
        '<span class="cq-status" style="color:#fff;background:{};padding:1px 6px;'
        'border-radius:3px;white-space:nowrap">{}</span>',
        COLOURS.get(task.status, "#6b7280"),
        task.get_status_display(),
    )


def change_url(task_id):
    return reverse("admin:cq_task_change", args=[task_id])


def linked_ids(text):
    """`text` with each task id in it linked to that task's page (an
    INCOMPLETE parent's error names its failed subtask)."""
    parts, last = [], 0
    for match in UUID.finditer(text):
        parts.append(format_html("{}", text[last : match.start()]))
        parts.append(format_html('<a href="{}">{}</a>', change_url(match.group()), match.group()))
        last = match.end()
    parts.append(format_html("{}", text[last:]))
    return mark_safe("".join(parts))


def render_tree(task):
    """The whole tree `task` belongs to, as nested lists, `task` in bold."""
    model = type(task)
    top = model.objects.filter(pk=task.top_id).first() or task
    nodes = list(
        model.objects.filter(root_id=top.pk).order_by("submitted").only(*NODE_FIELDS)[:MOST_NODES]
    )
    children = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    more = (
        format_html("<p>Only the first {} tasks of the tree are drawn.</p>", MOST_NODES)
        if len(nodes) == MOST_NODES
        else ""
    )
    # Tasks chained after the top-level task (or after one of those) have no
    # parent either: they are drawn after it, at its level.
    level = [top] + [node for node in children.get(None, []) if node.pk != top.pk]
    return format_html(
        '<ul class="cq-tree" style="margin:0;padding-left:1em">{}</ul>{}',
        format_html_join("", "{}", ((_node(node, children, task.pk),) for node in level)),
        more,
    )


def _node(task, children, current):
    name = (
        format_html("<strong>{}</strong>", task.func_name) if task.pk == current else task.func_name
    )
    chained = (
        format_html(" (chained after {})", str(task.previous_id)[:8]) if task.previous_id else ""
    )
    error = format_html(" — {}", linked_ids(task.error.splitlines()[0][:200])) if task.error else ""
    subtree = children.get(task.pk, [])
    nested = (
        format_html(
            '<ul style="padding-left:1.5em">{}</ul>',
            format_html_join("", "{}", ((_node(child, children, current),) for child in subtree)),
        )
        if subtree
        else ""
    )
    return format_html(
        '<li style="list-style:disc;margin:2px 0">{} <a href="{}">{}</a> {}{} '
        "<small>{}</small>{}{}</li>",
        badge(task),
        change_url(task.pk),
        name,
        str(task.pk)[:8],
        chained,
        _timing(task),
        error,
        nested,
    )


def _timing(task):
    if task.started and task.finished:
        return f"ran {(task.finished - task.started).total_seconds():.3f} s"
    if task.started:
        return f"started {task.started:%H:%M:%S}"
    return ""


def log_table(lines):
    """A tree's log lines, each level in its colour."""
    rows = format_html_join(
        "",
        '<tr><td style="white-space:nowrap">{}</td><td style="color:{}">{}</td><td>{}</td>'
        "<td>{}</td></tr>",
        (
            (
                line.get("timestamp", ""),
                LEVEL_COLOURS.get(line.get("level", ""), "inherit"),
                line.get("level", ""),
                line.get("task", ""),
                line.get("message", ""),
            )
            if isinstance(line, dict)
            else ("", "inherit", "", "", line)
            for line in lines
        ),
    )
    return format_html(
        "<table><tr><th>time</th><th>level</th><th>task</th><th>message</th></tr>{}</table>",
        rows,
    )
