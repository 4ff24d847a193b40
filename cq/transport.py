"""Doorbells on a channels-redis layer, in one round trip each way.

channels-redis keeps a channel as a sorted set (`prefix + channel`, scored by
send time) of messages in its own serialisation. Its `send` takes four
sequential round trips and its `receive` four more, one message at a time.
cq reads and writes the same sorted set, in the same format, with one round
trip per batch: messages cq sends can be read by `layer.receive`, and messages
sent with `layer.send` are read by cq's worker.

Only doorbells travel here, and the row is the truth, so cq needs none of the
backup-queue machinery that `receive` uses to survive cancellation: a doorbell
lost between Redis and a worker leaves its row QUEUED for the feeder.

Every Redis operation here has a deadline (`bounded`, CQ_REDIS_TIMEOUT): a
half-open connection would otherwise hang it until TCP keepalive gives up.
Cancelling a redis-py command mid-read disconnects its connection, so the
next operation gets a fresh one from the pool.
"""

import asyncio
import logging
import random
import time

from channels_redis.core import RedisChannelLayer
from redis.exceptions import TimeoutError as RedisTimeoutError

from .conf import settings as cq_settings
from .outages import Throttled

logger = logging.getLogger(__name__)

# Stands for a popped member that could not be decoded: the worker treats it
# like any message that leads to no claim (see Worker._handle).
UNDECODABLE = {"type": "cq.undecodable"}

_undecodable = Throttled(logger)

# Doorbells written by one script call.
SEND_BATCH = 1000

# KEYS[1] channel key; ARGV: expired-before, capacity, expiry, now, messages...
# Returns how many messages fitted under the capacity.
SEND_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local added = 0
for i = 5, #ARGV do
    if added >= free then break end
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[i])
    added = added + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return added
"""

# Seconds one blocking pop waits: shorter than redis-py's default 5 s socket
# timeout, so an idle worker never trips it, whatever the host settings.
BLOCK_SECONDS = 2


def is_redis(layer):
    return isinstance(layer, RedisChannelLayer)


async def bounded(awaitable, what, extra=0.0):
    """Await a Redis operation for at most CQ_REDIS_TIMEOUT (+ `extra`, a
    blocking command's own block time); raises redis' TimeoutError after."""
    seconds = cq_settings.REDIS_TIMEOUT + extra
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps every
        # operation in a task of its own, a cost each doorbell would pay.
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise RedisTimeoutError(f"no answer from Redis to {what} within {seconds:g}s") from None


async def send_many(layer, channel, messages):
    """Add messages to the channel; returns how many fitted under its capacity."""
    key = layer.prefix + channel
    capacity = layer.get_capacity(channel)
    # Like channels-redis, a normal channel's messages go to any of its hosts.
    connection = layer.connection(random.randrange(layer.ring_size))
    # A registered script runs by its hash (EVALSHA), loading itself once.
    script = connection.register_script(SEND_SCRIPT)
    sent = 0
    for start in range(0, len(messages), SEND_BATCH):
        now = time.time()
        batch = [layer.serialize(m) for m in messages[start : start + SEND_BATCH]]
        sent += await bounded(
            script(
                keys=[key],
                args=[int(now) - int(layer.expiry), capacity, int(layer.expiry), now, *batch],
            ),
            "send",
        )
        if sent < start + len(batch):
            break
    return sent


class Receiver:
    """Pops up to `count` messages, oldest first, blocking while none is there."""

    def __init__(self, layer, channel):
        self.layer = layer
        self.key = layer.prefix + channel
        self._hosts = list(range(layer.ring_size))
        random.shuffle(self._hosts)

    async def receive(self, count, block=None):
        """Messages (at least one, at most `count`), or [] after `block` seconds."""
        if count > 1 or len(self._hosts) > 1:
            for index in self._hosts:
                popped = await bounded(
                    self.layer.connection(index).zpopmin(self.key, count), "ZPOPMIN"
                )
                if popped:
                    return self._decode(member for member, _ in popped)
        # Several hosts: block on each in turn, briefly, so none is starved.
        block = block or (BLOCK_SECONDS if len(self._hosts) == 1 else 0.1)
        index = self._hosts[0]
        self._hosts.append(self._hosts.pop(0))
        popped = await bounded(
            self.layer.connection(index).bzpopmin(self.key, timeout=block), "BZPOPMIN", extra=block
        )
        return [] if popped is None else self._decode([popped[1]])

    async def give_back(self, messages):
        """Return messages that were received but will not be run (shutting down)."""
        messages = [m for m in messages if m is not UNDECODABLE]
        if messages:
            now = time.time()
            await bounded(
                self.layer.connection(self._hosts[0]).zadd(
                    self.key, {self.layer.serialize(m): now for m in messages}
                ),
                "ZADD",
            )

    def _decode(self, members):
        """Each member on its own: one that cannot be decoded (another
        serializer, a wrong key, garbage) is skipped, not the batch with it."""
        messages = []
        for member in members:
            try:
                messages.append(self.layer.deserialize(member))
            except Exception as exc:  # noqa: BLE001 - any bytes may be on a channel
                _undecodable.warning(
                    "undecodable message skipped channel=%s error=%r", self.key, exc
                )
                messages.append(UNDECODABLE)
        return messages


def done_channel(layer, task_id):
    """The pub/sub channel on which a task's end is announced to `wait()`."""
    return f"{layer.prefix}cq-done:{task_id}"
