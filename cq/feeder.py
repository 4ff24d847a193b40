"""Feeding the channel from the table: ring QUEUED rows whose doorbell is gone.

The table is the backlog; the channel holds at most `capacity` doorbells. Each
housekeeping round a worker looks at what the channel holds and rings the
oldest QUEUED rows that have waited longer than CQ_REQUEUE_AFTER and have no
doorbell there, no more than the channel's free room. So a doorbell lost in
any way (expired, refused with ChannelFull, wiped by a Redis restart, taken by
a worker that died) is rung again; a backlog of any size reaches Redis one
channel-full at a time; and a busy channel is not flooded with duplicates.

Several workers feeding at the same moment may ring a row twice: the claim
runs it once, and channels-redis refuses sends beyond capacity.
"""

import logging
from datetime import timedelta

from redis.exceptions import RedisError

from . import channel, doorbell
from .conf import settings as cq_settings
from .models import Task
from .outages import OutageLog
from .queues import channel_for

logger = logging.getLogger(__name__)

# Most rows rung in one round.
BATCH = 500
# Seconds a round waits for its doorbells to reach Redis, so that the next
# round (here or on another worker) sees them there.
SEND_TIMEOUT = 5.0


_redis = OutageLog(logger, "channel layer", "feeding paused")


def feed(worker, now, older_than=None):
    """Ring the rows that wait with no doorbell, in the worker's queues (in
    every queue with no worker, when run as a task); returns their ids."""
    if older_than is None:
        older_than = cq_settings.REQUEUE_AFTER
    waiting = Task.objects.filter(
        status=Task.STATUS_QUEUED,
        run_after__isnull=True,
        submitted__lte=now - timedelta(seconds=older_than),
    )
    if worker is not None:
        queues = worker.queues
    else:
        queues = waiting.order_by().values_list("queue", flat=True).distinct()
    rung = []
    for queue in queues:
        rung += _feed_queue(worker, waiting.filter(queue=queue), queue)
    return rung


def _feed_queue(worker, waiting, queue):
    if not waiting.exists():
        return []
    room, present = _room_and_present(worker, channel_for(queue))
    if not room:
        return []
    oldest = waiting.order_by("submitted").values_list("pk", flat=True)[: room + len(present)]
    ids = [pk for pk in oldest if str(pk) not in present][:room]
    if ids:
        logger.info("ringing tasks with no doorbell count=%s queue=%s", len(ids), queue)
        doorbell.ring(ids, queue)
        doorbell.flush(SEND_TIMEOUT)
    return ids


def _room_and_present(worker, channel_name):
    """How many doorbells to ring at most, and the task ids already rung."""
    try:
        state = channel.inspect(channel_name)
    except RedisError as exc:
        _redis.failed(exc)
        return 0, frozenset()
    _redis.succeeded()
    if state is None:
        # A layer cq cannot look into: ring blindly, but only while this
        # worker is idle (or on request, with no worker), when whatever waits
        # has surely lost its doorbell.
        return (BATCH if worker is None or worker.idle else 0), frozenset()
    return min(state.room, BATCH), state.task_ids
