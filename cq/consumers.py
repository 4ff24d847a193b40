"""The Channels side of cq: one `run_task` message, at most one task run."""

import logging
import uuid

from channels.consumer import SyncConsumer
from channels.db import database_sync_to_async

from .conf import settings as cq_settings
from .execution import run_task
from .outages import Throttled

__all__ = ["CQConsumer", "handle_message", "run_task", "task_id_of"]

logger = logging.getLogger(__name__)

# A flood of junk on the channel must not become a flood of log lines.
_malformed = Throttled(logger)
_unknown = Throttled(logger)


def handle_message(message, worker=""):
    """Run the task a doorbell names. This is the per-message exception
    boundary: a malformed message or a failing task is logged, never raised."""
    task_id = task_id_of(message)
    if task_id is None:
        return None
    try:
        task = run_task(task_id, worker)
        if task is None:
            _explain_unclaimed(task_id)
        return task
    except Exception:
        logger.exception("task run failed id=%s; the sweeper will recover it", task_id)
        return None


class CQConsumer(SyncConsumer):
    """Route `cq-tasks` here: `ChannelNameRouter({"cq-tasks": CQConsumer.as_asgi()})`.

    cq's own `runworker cq-tasks` does not use it: its slots claim from the
    table (cq.slots). This consumer serves channels' stock worker, one
    message and one task at a time.
    """

    @property
    def channel_layer_alias(self):
        return cq_settings.CHANNEL_LAYER

    @database_sync_to_async
    def dispatch(self, message):
        # Every message goes through the isolation boundary, whatever its type:
        # channels would raise on an unknown type and kill its worker.
        handle_message(message)


def task_id_of(message):
    """The task id a doorbell names, or None (and a warning) if it is malformed."""
    if not isinstance(message, dict) or message.get("type") != "run_task":
        _malformed.warning("malformed message skipped message=%r", message)
        return None
    try:
        return uuid.UUID(str(message["task_id"]))
    except (KeyError, ValueError):
        _malformed.warning("malformed message skipped message=%r", message)
        return None


def _explain_unclaimed(task_id):
    from .models import Task

    status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
    if status is None:
        _unknown.warning("message for unknown task skipped id=%s", task_id)
    else:
        logger.debug("task not claimable id=%s status=%s", task_id, status)
