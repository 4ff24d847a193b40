"""The task list's filters: top-level tasks by default, by function, by worker."""

from django.contrib import admin

from .. import registry

# Lookups that name a tree or a link: with one of them, or a search, the list
# shows subtasks too (a search for a subtask's id must find it).
SHOWS_EVERY_LEVEL = (
    "q",
    "parent__id__exact",
    "root__id__exact",
    "retry_of__id__exact",
    "repeating_task__id__exact",
)


class LevelFilter(admin.SimpleListFilter):
    """Top-level tasks only, unless asked: a big tree's subtasks would bury
    the tasks an operator looks for. Their tree is a click away."""

    title = "level"
    parameter_name = "level"

    def lookups(self, request, model_admin):
        return [("top", "Top-level tasks"), ("sub", "Subtasks"), ("all", "All tasks")]

    def value(self):
        value = super().value()
        if value is None:
            return "all" if any(key in self.request_params for key in SHOWS_EVERY_LEVEL) else "top"
        return value

    def __init__(self, request, params, model, model_admin):
        self.request_params = dict(request.GET)
        super().__init__(request, params, model, model_admin)

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == "top":
            return queryset.filter(parent__isnull=True)
        if self.value() == "sub":
            return queryset.filter(parent__isnull=False)
        return queryset


class FunctionFilter(admin.SimpleListFilter):
    """The registered @tasks, known without scanning the table."""

    title = "function"
    parameter_name = "func_name"

    def lookups(self, request, model_admin):
        return _with_current(registry.names(), self.value())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(func_name=self.value())
        return queryset


class WorkerFilter(admin.SimpleListFilter):
    """The workers with a heartbeat row, known without scanning the table."""

    title = "worker"
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        from ..models import WorkerHeartbeat

        return _with_current(WorkerHeartbeat.objects.values_list("name", flat=True), self.value())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(worker=self.value())
        return queryset


def _with_current(names, current):
    """Choices of `names`, and the value asked for even when it is not among
    them (a function no longer registered, a worker gone): a filter with no
    choice would not apply at all."""
    names = sorted(set(names) | ({current} if current else set()))
    return [(name, name) for name in names]
