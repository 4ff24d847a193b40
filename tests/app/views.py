"""A page of the app's own that shows a task live, as docs/live.md shows."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render

from cq.models import Task


@staff_member_required
def task_page(request, task_id):
    return render(request, "app/task_page.html", {"task": get_object_or_404(Task, pk=task_id)})
