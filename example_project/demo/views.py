from django.shortcuts import get_object_or_404, render

from cq.models import Task


def task_page(request, task_id):
    """A page of the app's own that follows a task live ({% cq_progress task %})."""
    return render(request, "demo/task.html", {"task": get_object_or_404(Task, pk=task_id)})
