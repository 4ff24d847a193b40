"""The admin of repeating tasks: a control panel with a validated schedule."""

import functools
import zoneinfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import ngettext

from .. import registry, scheduler
from ..cron import get_zone, upcoming
from ..describe import describe
from ..exceptions import CQError
from ..models import RepeatingTask, Task
from .times import moment
from .tree import badge

# Upcoming runs shown on a repeating task's page.
UPCOMING = 5

BR = mark_safe("<br>")


@functools.cache
def _zone_names():
    return sorted(zoneinfo.available_timezones())


class RepeatingTaskForm(forms.ModelForm):
    """The function comes from a dropdown of registered @tasks, never typed blind."""

    class Meta:
        model = RepeatingTask
        fields = [
            "func_name",
            "args",
            "kwargs",
            "result_ttl",
            "crontab",
            "timezone",
            "enabled",
            "coalesce",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A stored value missing from a list stays selectable, so that saving
        # the form never swaps it silently; validation then says what is wrong.
        self._choose("func_name", registry.names(), "---------", "not registered")
        default_zone = f"Project default ({settings.TIME_ZONE})"
        self._choose("timezone", _zone_names(), default_zone, "unknown time zone")

    def _choose(self, field, values, empty_label, unknown_label):
        choices = [("", empty_label), *((value, value) for value in values)]
        current = getattr(self.instance, field)
        if current and current not in values:
            choices.append((current, f"{current} ({unknown_label})"))
        self.fields[field].widget = forms.Select(choices=choices)


@admin.register(RepeatingTask)
class RepeatingTaskAdmin(admin.ModelAdmin):
    form = RepeatingTaskForm
    list_display = [
        "func_name",
        "crontab",
        "description",
        "zone",
        "last_run_time",
        "last_run_status",
        "next_run_time",
        "enabled",
        "coalesce",
    ]
    list_filter = ["enabled", "coalesce"]
    search_fields = ["func_name", "crontab"]
    # Each action changes the schedule or launches a run: it needs the change
    # permission, as the change form does (a viewer sees no action at all).
    actions = ["run_now", "enable", "disable"]
    readonly_fields = ["description", "upcoming_runs", "last_run_time", "next_run_time", "runs"]
    fieldsets = [
        (None, {"fields": ["func_name", "args", "kwargs", "result_ttl"]}),
        ("Schedule", {"fields": ["crontab", "description", "timezone", "enabled", "coalesce"]}),
        ("Runs", {"fields": ["last_run_time", "next_run_time", "upcoming_runs", "runs"]}),
    ]

    @admin.display(description="schedule")
    def description(self, obj):
        return describe(obj.crontab) if obj.crontab else "-"

    @admin.display(description="time zone")
    def zone(self, obj):
        return obj.timezone or settings.TIME_ZONE

    # Runs on the schedule's own clock: "08:00 Europe/Paris" beside "0 8 * * *".
    @admin.display(description="last run", ordering="last_run")
    def last_run_time(self, obj):
        return moment(obj.last_run, self._zone_of(obj))

    @admin.display(description="last run's status")
    def last_run_status(self, obj):
        status = getattr(obj, "last_status", None)
        if status is None:
            return "-"
        return badge(Task(status=status))

    def get_queryset(self, request):
        # The status of each schedule's latest run, in the list's one query
        # (through the index on repeating_task).
        latest = Task.objects.filter(repeating_task=OuterRef("pk")).order_by("-submitted")
        return (
            super()
            .get_queryset(request)
            .annotate(last_status=Subquery(latest.values("status")[:1]))
        )

    @admin.display(description="next run", ordering="next_run")
    def next_run_time(self, obj):
        return moment(obj.next_run, self._zone_of(obj))

    def _zone_of(self, obj):
        try:
            return get_zone(obj.timezone)
        except CQError:  # an unknown zone stored earlier: the project's, not a crash
            return None

    @admin.display(description=f"next {UPCOMING} runs")
    def upcoming_runs(self, obj):
        if not obj.pk or not obj.enabled:
            return "-"
        try:
            zone = get_zone(obj.timezone)
            runs = upcoming(obj.crontab, timezone.now(), zone, UPCOMING)
        except CQError as exc:
            return str(exc)
        return format_html_join(BR, "{}", ((moment(run, zone),) for run in runs))

    @admin.display(description="launched tasks")
    def runs(self, obj):
        if not obj.pk:
            return "-"
        count = obj.runs.count()
        return format_html(
            '<a href="{}?repeating_task__id__exact={}">{}</a>',
            reverse("admin:cq_task_changelist"),
            obj.pk,
            ngettext("%(count)d task", "%(count)d tasks", count) % {"count": count},
        )

    @admin.action(description="Run the selected repeating tasks now", permissions=["change"])
    def run_now(self, request, queryset):
        launched = 0
        for repeating in queryset:
            try:
                scheduler.run_now(repeating)
            except CQError as exc:
                self.message_user(request, f"{repeating}: {exc}", messages.ERROR)
                continue
            launched += 1
        self._report(
            request,
            ngettext(
                "%(count)d repeating task launched.",
                "%(count)d repeating tasks launched.",
                launched,
            ),
            launched,
        )

    @admin.action(description="Enable the selected repeating tasks", permissions=["change"])
    def enable(self, request, queryset):
        count = scheduler.enable(queryset)
        self._report(
            request,
            ngettext(
                "%(count)d repeating task enabled.",
                "%(count)d repeating tasks enabled.",
                count,
            ),
            count,
        )

    @admin.action(description="Disable the selected repeating tasks", permissions=["change"])
    def disable(self, request, queryset):
        count = scheduler.disable(queryset)
        self._report(
            request,
            ngettext(
                "%(count)d repeating task disabled.",
                "%(count)d repeating tasks disabled.",
                count,
            ),
            count,
        )

    def _report(self, request, message, count):
        self.message_user(request, message % {"count": count}, messages.SUCCESS)
