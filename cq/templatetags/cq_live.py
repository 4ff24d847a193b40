"""`{% load cq_live %}{% cq_progress task %}`: a progress bar and a live log
of a task for the app's own pages, updated over cq.live's WebSocket with a
small script of plain JavaScript (no build step), inlined once per page."""

from django import template

from ..live.routing import PREFIX
from ..live.state import snapshot

register = template.Library()


@register.inclusion_tag("cq/progress.html", takes_context=True)
def cq_progress(context, task, log=True):
    """Render `task` (a Task or its id) as it stands now; the script then
    follows it live. `log=False` leaves out the log lines."""
    # The script and its style go once into a page that shows several tasks.
    first = not context.render_context.get("cq_live_script")
    context.render_context["cq_live_script"] = True
    return progress_context(getattr(task, "pk", task), log, with_script=first)


def progress_context(task_id, log=True, with_script=True) -> dict:
    """What cq/progress.html renders for `task_id` (the admin's page uses it too)."""
    from ..models import Task

    # A task deleted since the page's view looked it up (result_ttl, an
    # operator) shows as missing: the page itself must not fail.
    state = snapshot(Task, task_id, with_logs=log)
    return {
        "task_id": task_id,
        "state": state,
        "percent": (state and state["percent"]) or 0,
        "path": f"/{PREFIX}tasks/{task_id}/",
        "log": log,
        "with_script": with_script,
    }
