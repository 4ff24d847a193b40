"""Live events: what cq publishes to the channel-layer groups that browsers watch.

Every event of a task tree goes to one group, named after the tree's
top-level task. Status changes
come from cq's signals (cq.transitions sends them, once the change has
committed), progress from `cqt.progress()`, log lines from `cqt.log()`.
Events are sent from the outbox thread (cq.live.outbox): the task never
waits for Redis. They are sent only while someone watches (cq.live.watchers),
and never with CQ_LIVE off.
"""

from channels.layers import get_channel_layer

from .. import signals
from ..conf import settings as cq_settings
from .outbox import outbox
from .watchers import watchers


def tree_group(top_id) -> str:
    """The group of the tree under the top-level task `top_id`."""
    return f"cq.tree.{top_id}"


def connect() -> None:
    """Publish status changes: connect to cq's signals (from AppConfig.ready)."""
    for name in ("task_enqueued", "task_started", "task_waiting", "task_retried", "task_finished"):
        getattr(signals, name).connect(status_changed, dispatch_uid=f"cq.live.{name}")


def status_changed(sender, task_id, **kwargs):
    """A signal receiver: the row has changed status; publish it as it now is."""
    if _publishing():
        outbox.put(_send_task, sender, task_id)


def progress(task, value) -> None:
    """Publish `value` (a progress dict) of the running `task`."""
    if _publishing():
        event = {"type": "cq.progress", "task_id": str(task.pk), "progress": value}
        outbox.put(_send, task.top_id, event)


def log_lines(top_id, lines) -> None:
    """Publish log lines just buffered for the tree under `top_id`."""
    if lines and _publishing():
        outbox.put(_send, top_id, {"type": "cq.log", "lines": lines})


def _publishing():
    # With nobody watching, an event costs nothing but this check (cq.live.watchers).
    return cq_settings.LIVE and watchers.anyone()


def _send_task(model, task_id):
    # Read on the outbox thread, after the change committed: the row as it is.
    row = model.objects.filter(pk=task_id).values_list("root_id", "status").first()
    if row is not None:
        top_id, status = row
        _send(top_id or task_id, {"type": "cq.task", "task_id": str(task_id), "status": status})


def _send(top_id, event):
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    outbox.run(layer.group_send(tree_group(top_id), event))
