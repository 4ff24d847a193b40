"""What the cq channel holds in Redis right now: how many doorbells, for which tasks.

The feeder reads it to ring only rows that have no doorbell waiting, and no
more of them than the channel has room for; `cq_status` shows the depth. It
reads channels-redis' own keys (a sorted set named prefix + channel, scored by
send time, and its `$inflight` backup set) with plain synchronous clients, so
housekeeping threads need no event loop, and with CQ_REDIS_TIMEOUT as their
socket timeout, so a hung Redis cannot hang them.
"""

import logging
import time
import weakref
from dataclasses import dataclass

import redis
import redis.sentinel
from channels.layers import get_channel_layer

from .conf import settings as cq_settings
from .transport import is_redis

logger = logging.getLogger(__name__)

_clients = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ChannelState:
    depth: int  # live doorbells waiting, over all shards
    capacity: int  # most doorbells the channel takes, over all shards
    task_ids: frozenset  # ids (str) of tasks with a doorbell waiting or being received

    @property
    def room(self):
        return max(self.capacity - self.depth, 0)


def inspect():
    """The state of the cq channel, or None when its layer is not channels-redis
    (whose keys are the only ones cq knows how to read). Raises redis errors."""
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    if not is_redis(layer):
        return None
    channel = cq_settings.CHANNEL
    key = layer.prefix + channel
    # channels-redis deletes messages this old at its next send: already gone.
    oldest_live = int(time.time()) - int(layer.expiry)
    depth, task_ids = 0, set()
    for client in _clients_for(layer):
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


def _clients_for(layer):
    clients = _clients.get(layer)
    if clients is None:
        clients = _clients[layer] = [_client(host) for host in layer.hosts]
    return clients


def _client(host):
    """A synchronous client for one channels-redis `hosts` entry."""
    # An inspection waits for Redis no longer than any other cq operation.
    timeout = cq_settings.REDIS_TIMEOUT
    options = {**host, "socket_timeout": timeout, "socket_connect_timeout": timeout}
    if "address" in options:
        return redis.Redis.from_url(options.pop("address"), **options)
    if "master_name" in options:
        sentinel = redis.sentinel.Sentinel(
            options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs", None)
        )
        return sentinel.master_for(options.pop("master_name"), **options)
    return redis.Redis(**options)
