"""The admin of tasks: an audit view of what ran and how, and the operator's
console: retry what failed, revoke what should not run, follow a tree live.

A task's fields are never edited through a form (a save would race the
workers that own its status): the change permission allows the actions only.

Everything a task stored (arguments, results, errors, log lines) may hold
user data, so it is rendered through format_html / format_html_join only.
"""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import ngettext

from ..exceptions import CQError
from ..live import dashboard
from ..live.routing import PREFIX
from ..models import Task
from ..templatetags.cq_live import progress_context
from .filters import FunctionFilter, LevelFilter, WorkerFilter
from .times import moment
from .tree import badge, linked_ids, log_table, render_tree

# Subtasks or chained tasks linked from a task's page.
MOST_LINKS = 50
BR = mark_safe("<br>")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Tasks change through cq (its actions), never through a form."""

    # Few, narrow columns: the list must read at 1280 px; the rest is a click away.
    list_display = ["task_name", "status_badge", "submitted_short", "duration"]
    list_filter = [
        LevelFilter,
        "status",
        "queue",
        FunctionFilter,
        WorkerFilter,
        "backend",
        "repeating_task",
    ]
    search_fields = ["id", "func_name", "error"]
    date_hierarchy = "submitted"
    # Newest first, through the index of top-level tasks (cq_task_top_newest).
    ordering = ["-submitted"]
    # Counting every row of a big task table on each page view is slow.
    show_full_result_count = False
    # Each action changes tasks: it needs the change permission (a viewer sees none).
    actions = ["retry_tasks", "revoke_tasks"]
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
                    "retry_links",
                ]
            },
        ),
        ("Live", {"fields": ["live_progress"]}),
        ("Call", {"fields": ["arguments", "keyword_arguments", "unique_key", "time_limit"]}),
        (
            "Outcome",
            {"fields": ["outcome", "error_text", "traceback_text", "retries", "attempt_history"]},
        ),
        ("Logs", {"fields": ["log_lines"]}),
        (
            "Tree",
            {
                "fields": [
                    "tree_view",
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

    def get_urls(self):
        dashboard_page = self.admin_site.admin_view(self.dashboard_view)
        return [
            path("dashboard/", dashboard_page, name="cq_dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        """Counts by status and queue, queue depth and oldest age, workers and
        what they run, the last hour's throughput; live over cq.live's WebSocket."""
        if not dashboard.may_view(request.user):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "cq dashboard",
            "figures": dashboard.figures(),
            "path": f"/{PREFIX}dashboard/",
        }
        return TemplateResponse(request, "admin/cq/dashboard.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("tasks change through cq's actions, not through a form")
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="task", ordering="func_name")
    def task_name(self, obj):
        # The function, and below it the id and queue: three columns in one.
        return format_html(
            '{}<br><small style="white-space:nowrap">{} · {}</small>',
            obj.func_name,
            str(obj.pk)[:8],
            obj.queue,
        )

    @admin.display(description="submitted", ordering="submitted")
    def submitted_short(self, obj):
        # The date above the time: one column narrower than "2026-11-25 09:30:01 UTC".
        day, _, rest = moment(obj.submitted).partition(" ")
        return format_html('<span style="white-space:nowrap">{}<br>{}</span>', day, rest)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(obj)

    @admin.display(description="live")
    def live_progress(self, obj):
        # Follows the task over cq.live's WebSocket when asgi.py routes it.
        return mark_safe(render_to_string("cq/progress.html", progress_context(obj.pk, log=False)))

    @admin.display(description="tree")
    def tree_view(self, obj):
        return render_tree(obj)

    @admin.display(description="error")
    def error_text(self, obj):
        return linked_ids(obj.error) if obj.error else "-"

    @admin.display(description="earlier attempts")
    def attempt_history(self, obj):
        if not obj.attempts:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.get("attempt", ""),
                    entry.get("worker", ""),
                    entry.get("started") or "",
                    entry.get("ended") or "",
                    entry.get("error", ""),
                )
                for entry in obj.attempts
            ),
        )
        return format_html(
            "<table><tr><th>#</th><th>worker</th><th>started</th><th>ended</th>"
            "<th>error</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="retries")
    def retry_links(self, obj):
        parts = []
        if obj.retry_of_id:
            parts.append(format_html("a retry of {}", _link(obj.retry_of)))
        retried = list(obj.retried_as.order_by("submitted")[:MOST_LINKS])
        if retried:
            parts.append(format_html("retried as {}", _links(retried)))
        return format_html_join(BR, "{}", ((part,) for part in parts)) if parts else "-"

    @admin.action(
        description="Retry the selected failed, incomplete or lost tasks", permissions=["change"]
    )
    def retry_tasks(self, request, queryset):
        retried = 0
        for task in queryset.filter(status__in=Task.STATUS_ERROR):
            try:
                task.retry()
            except CQError as exc:  # e.g. its function is no longer registered
                self.message_user(request, f"{task}: {exc}", messages.ERROR)
                continue
            retried += 1
        skipped = queryset.exclude(status__in=Task.STATUS_ERROR).count()
        self._report(
            request,
            ngettext("%(count)d task retried.", "%(count)d tasks retried.", retried),
            retried,
        )
        if skipped:
            self._skipped(
                request,
                ngettext(
                    "%(count)d task skipped: only failed, incomplete or lost tasks are retried.",
                    "%(count)d tasks skipped: only failed, incomplete or lost tasks are retried.",
                    skipped,
                ),
                skipped,
            )

    @admin.action(description="Revoke the selected active tasks", permissions=["change"])
    def revoke_tasks(self, request, queryset):
        revoked = 0
        for task in queryset.filter(status__in=Task.STATUS_ACTIVE):
            try:
                task.revoke()
            except CQError as exc:
                self.message_user(request, f"{task}: {exc}", messages.ERROR)
                continue
            revoked += 1
        skipped = queryset.exclude(status__in=Task.STATUS_ACTIVE).count()
        self._report(
            request,
            ngettext(
                "%(count)d task revoked (with its subtasks and chained tasks).",
                "%(count)d tasks revoked (with their subtasks and chained tasks).",
                revoked,
            ),
            revoked,
        )
        if skipped:
            self._skipped(
                request,
                ngettext(
                    "%(count)d task skipped: it had already ended.",
                    "%(count)d tasks skipped: they had already ended.",
                    skipped,
                ),
                skipped,
            )

    def _report(self, request, message, count):
        self.message_user(request, message % {"count": count}, messages.SUCCESS)

    def _skipped(self, request, message, count):
        self.message_user(request, message % {"count": count}, messages.WARNING)

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
        return log_table(obj.logs) if obj.logs else "-"

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
