"""Live events: what cq publishes to the channel-layer groups that browsers watch.

Every event of a task tree goes to one group, named after the tree's
top-level task. Status changes
come from cq's signals (cq.transitions sends them, once the change has
committed), progress from `cqt.progress()`, log lines from `cqt.log()`.
Events are sent from the outbox thread (cq.live.outbox): the task never
waits for Redis, and with CQ_LIVE off nothing is sent at all.
"""

from channels.layers import get_channel_layer

from .. import signals
from ..conf import settings as cq_settings
from .outbox import outbox


def tree_group(top_id) -> str:
    """The group of the tree under the top-level task `top_id`."""
    return f"cq.tree.{top_id}"


def connect() -> None:
    """Publish status changes: connect to cq's signals (from AppConfig.ready)."""
    for name in ("task_enqueued", "task_started", "task_waiting", "task_retried", "task_finished"):
        getattr(signals, name).connect(status_changed, dispatch_uid=f"cq.live.{name}")


def status_changed(sender, task_id, **kwargs):
    """A signal receiver: the row has changed status; publish it as it now is."""
    if cq_settings.LIVE:
        outbox.put(_send_task, sender, task_id)


def progress(task, value) -> None:
    """Publish `value` (a progress dict) of the running `task`."""
    if cq_settings.LIVE:
        event = {"type": "cq.progress", "task_id": str(task.pk), "progress": value}
        outbox.put(_send, task.top_id, event)


def log_lines(top_id, lines) -> None:
    """Publish log lines just buffered for the tree under `top_id`."""
    if cq_settings.LIVE and lines:
        outbox.put(_send, top_id, {"type": "cq.log", "lines": lines})


def _send_task(model, task_id):
    # Read on the outbox thread, after the change committed: the row as it is.
    row = model.objects.filter(pk=task_id).values_list("root_id", "status").first()
    if row is not None:
        top_id, status = row
        _send(top_id or task_id, {"type": "cq.task", "task_id": str(task_id), "status": status})


def _send(top_id, event):
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    outbox.run(layer.group_send(tree_group(top_id), event))
