"""What a cq channel holds in Redis right now: how many doorbells, for which tasks.

The feeder reads it to ring only rows that have no doorbell waiting, and no
more of them than the channel has room for; `cq_status` shows the depth. It
reads channels-redis' own keys (a sorted set named prefix + channel, scored by
send time, and its `$inflight` backup set) with transport's synchronous
clients, so housekeeping threads need no event loop.
"""

import logging
import time
from dataclasses import dataclass

from channels.layers import get_channel_layer

from .conf import settings as cq_settings
from .transport import is_redis, sync_clients

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelState:
    depth: int  # live doorbells waiting, over all shards
    capacity: int  # most doorbells the channel takes, over all shards
    task_ids: frozenset  # ids (str) of tasks with a doorbell waiting or being received

    @property
    def room(self):
        return max(self.capacity - self.depth, 0)


def inspect(channel=None):
    """The state of a cq channel (CQ_CHANNEL, the default queue's, unless
    given), or None when its layer is not channels-redis (whose keys are the
    only ones cq knows how to read). Raises redis errors."""
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    if not is_redis(layer):
        return None
    channel = channel or cq_settings.CHANNEL
    key = layer.prefix + channel
    # channels-redis deletes messages this old at its next send: already gone.
    oldest_live = int(time.time()) - int(layer.expiry)
    depth, task_ids = 0, set()
    for client in sync_clients(layer):
        pipe = client.pipeline(transaction=False)
        pipe.zrange(key, 0, -1, withscores=True)
        pipe.zrange(key + "$inflight", 0, -1)
        waiting, receiving = pipe.execute()
        live = [member for member, score in waiting if score > oldest_live]
        depth += len(live)
        task_ids.update(_task_ids(layer, live + receiving))
    capacity = layer.get_capacity(channel) * len(layer.hosts)
    return ChannelState(depth=depth, capacity=capacity, task_ids=frozenset(task_ids))


def _task_ids(layer, members):
    for member in members:
        try:
            message = layer.deserialize(member)
        except Exception:  # noqa: BLE001 - a foreign or undecryptable message is not ours
            continue
        if isinstance(message, dict) and "task_id" in message:
            yield str(message["task_id"])
