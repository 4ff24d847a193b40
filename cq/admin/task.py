"""The admin of tasks: a read-only audit view of what ran and how.

Everything a task stored (arguments, results, errors, log lines) may hold
user data, so it is rendered through format_html / format_html_join only.
"""

import json

from django.contrib import admin
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..models import Task
from .times import moment

# Subtasks or chained tasks linked from a task's page.
MOST_LINKS = 50
BR = mark_safe("<br>")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Read-only: tasks change through cq, not through a form."""

    list_display = [
        "short_id",
        "func_name",
        "status",
        "queue",
        "priority",
        "submitted_time",
        "started_time",
        "finished_time",
        "duration",
        "repeating_task",
    ]
    list_filter = ["status", "queue", "backend", "repeating_task"]
    search_fields = ["id", "func_name"]
    list_select_related = ["repeating_task"]
    # Counting every row of a big task table on each page view is slow.
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "func_name",
                    "backend",
                    "status",
                    "queue",
                    "priority",
                    "worker",
                    "repeating_task_link",
                ]
            },
        ),
        ("Call", {"fields": ["arguments", "keyword_arguments", "unique_key", "time_limit"]}),
        ("Outcome", {"fields": ["outcome", "error", "traceback_text", "retries"]}),
        ("Logs", {"fields": ["log_lines"]}),
        (
            "Tree",
            {
                "fields": [
                    "parent_link",
                    "root_link",
                    "subtask_links",
                    "previous_link",
                    "next_links",
                    "waits_for_link",
                ]
            },
        ),
        (
            "Timings",
            {
                "fields": [
                    "submitted_time",
                    "run_after_time",
                    "started_time",
                    "finished_time",
                    "waited",
                    "duration",
                    "result_expiry_time",
                ]
            },
        ),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    # Django's default format drops the seconds, which tell apart the steps of
    # a run that lasted a few of them.
    @admin.display(description="submitted", ordering="submitted")
    def submitted_time(self, obj):
        return moment(obj.submitted)

    @admin.display(description="run after", ordering="run_after")
    def run_after_time(self, obj):
        return moment(obj.run_after)

    @admin.display(description="started", ordering="started")
    def started_time(self, obj):
        return moment(obj.started)

    @admin.display(description="finished", ordering="finished")
    def finished_time(self, obj):
        return moment(obj.finished)

    @admin.display(description="result expiry", ordering="result_expiry")
    def result_expiry_time(self, obj):
        return moment(obj.result_expiry)

    @admin.display(description="ran for")
    def duration(self, obj):
        return _elapsed(obj.started, obj.finished)

    @admin.display(description="waited")
    def waited(self, obj):
        return _elapsed(obj.submitted, obj.started)

    @admin.display(description="args")
    def arguments(self, obj):
        return _json_block(obj.args)

    @admin.display(description="kwargs")
    def keyword_arguments(self, obj):
        return _json_block(obj.kwargs)

    @admin.display(description="result")
    def outcome(self, obj):
        return _json_block(obj.result)

    @admin.display(description="traceback")
    def traceback_text(self, obj):
        return format_html("<pre>{}</pre>", obj.traceback) if obj.traceback else "-"

    @admin.display(description="logs")
    def log_lines(self, obj):
        if not obj.logs:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    line.get("timestamp", ""),
                    line.get("level", ""),
                    line.get("task", ""),
                    line.get("message", ""),
                )
                if isinstance(line, dict)
                else ("", "", "", line)
                for line in obj.logs
            ),
        )
        return format_html(
            "<table><tr><th>time</th><th>level</th><th>task</th><th>message</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="repeating task")
    def repeating_task_link(self, obj):
        return _link(obj.repeating_task, "repeatingtask")

    @admin.display(description="parent")
    def parent_link(self, obj):
        return _link(obj.parent)

    @admin.display(description="top-level task")
    def root_link(self, obj):
        return _link(obj.root)

    @admin.display(description="chained after")
    def previous_link(self, obj):
        return _link(obj.previous)

    @admin.display(description="waits for")
    def waits_for_link(self, obj):
        return _link(obj.waits_for)

    @admin.display(description="subtasks")
    def subtask_links(self, obj):
        return _links(obj.subtasks.order_by("submitted"))

    @admin.display(description="chained tasks")
    def next_links(self, obj):
        return _links(obj.next.order_by("submitted"))


def _json_block(value):
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, cls=DjangoJSONEncoder))


def _elapsed(start, end):
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.3f} s"


def _link(obj, model="task"):
    if obj is None:
        return "-"
    url = reverse(f"admin:cq_{model}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj)


def _links(queryset):
    shown = list(queryset[: MOST_LINKS + 1])
    if not shown:
        return "-"
    more = mark_safe("<br>and more") if len(shown) > MOST_LINKS else ""
    return format_html(
        "{}{}", format_html_join(BR, "{}", ((_link(task),) for task in shown[:MOST_LINKS])), more
    )
