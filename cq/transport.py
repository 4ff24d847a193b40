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

Every Redis operation here has a deadline (CQ_REDIS_TIMEOUT): a half-open
connection would otherwise hang it until TCP keepalive gives up. The worker's
receive runs on its event loop (`bounded`; cancelling a redis-py command
mid-read disconnects its connection, so the next operation gets a fresh one);
sends and inspections use synchronous clients with that socket timeout.
"""

import asyncio
import logging
import random
import time
import weakref

import redis
import redis.sentinel
from channels_redis.core import RedisChannelLayer
from redis.exceptions import TimeoutError as RedisTimeoutError

from .conf import settings as cq_settings
from .outages import Throttled

logger = logging.getLogger(__name__)

# Stands for a popped member that could not be decoded: the worker treats it
# like any message that leads to no claim (see Worker._handle).
UNDECODABLE = {"type": "cq.undecodable"}

_undecodable = Throttled(logger)

# Synchronous clients per layer, one per host (see sync_clients).
_sync_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

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


def send_many_sync(layer, channel, messages):
    """Add messages to the channel; returns how many fitted under its capacity.
    A synchronous client, from the doorbell's sender thread: cheaper than a
    hop to an event loop for each ring."""
    clients = sync_clients(layer)
    if len(clients) > 1:
        # Sharded: a random host first, then the others for what it had no
        # room for, so the channel takes capacity x hosts (channel.inspect).
        clients = random.sample(clients, len(clients))
    sent = 0
    for client in clients:
        sent += _send_to_host(layer, client, channel, messages[sent:])
        if sent == len(messages):
            break
    return sent


def _send_to_host(layer, client, channel, messages):
    key = layer.prefix + channel
    capacity = layer.get_capacity(channel)
    script = _send_script(client)
    sent = 0
    for start in range(0, len(messages), SEND_BATCH):
        now = time.time()
        batch = [layer.serialize(m) for m in messages[start : start + SEND_BATCH]]
        args = [int(now) - int(layer.expiry), capacity, int(layer.expiry), now, *batch]
        sent += script(keys=[key], args=args)
        if sent < start + len(batch):
            break
    return sent


def publish_done_sync(layer, task_ids):
    """Announce finished tasks to `wait()` (host 0, where it subscribes)."""
    pipe = sync_clients(layer)[0].pipeline(transaction=False)
    for task_id in task_ids:
        pipe.publish(done_channel(layer, task_id), "1")
    pipe.execute()


def sync_clients(layer):
    """Synchronous clients for the layer's hosts, in `hosts` order. They wait
    for Redis no longer than CQ_REDIS_TIMEOUT (their socket timeout), so a
    hung Redis cannot hang the thread that uses them."""
    clients = _sync_clients.get(layer)
    if clients is None:
        clients = _sync_clients[layer] = [_sync_client(host) for host in layer.hosts]
    return clients


def _sync_client(host):
    timeout = cq_settings.REDIS_TIMEOUT
    options = {**host, "socket_timeout": timeout, "socket_connect_timeout": timeout}
    if "address" in options:
        return redis.Redis.from_url(options.pop("address"), **options)
    if "master_name" in options:
        # The sentinels get the same deadline: one that hangs must not hang
        # the sender, whose next ask finds the master through another.
        sentinel_kwargs = {
            **(options.pop("sentinel_kwargs", None) or {}),
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }
        sentinel = redis.sentinel.Sentinel(
            options.pop("sentinels"), sentinel_kwargs=sentinel_kwargs
        )
        return sentinel.master_for(options.pop("master_name"), **options)
    return redis.Redis(**options)


def _send_script(client):
    script = getattr(client, "_cq_send_script", None)
    if script is None:
        # Registered once per client: later calls run it by its hash (EVALSHA).
        script = client._cq_send_script = client.register_script(SEND_SCRIPT)
    return script


class Receiver:
    """Pops up to `count` messages, oldest first, from one channel or several
    (a worker's queues), blocking while none is there."""

    def __init__(self, layer, channels):
        self.layer = layer
        channels = [channels] if isinstance(channels, str) else list(channels)
        self.keys = [layer.prefix + channel for channel in channels]
        self._hosts = list(range(layer.ring_size))
        random.shuffle(self._hosts)
        # The key each message of the last batch came from, to give it back there.
        self._origins = {}

    async def receive(self, count, block=None):
        """Messages (at least one, at most `count` per channel), or [] after
        `block` seconds; with `block=0`, whatever is there without waiting."""
        if count > 1 or len(self._hosts) > 1 or len(self.keys) > 1 or block == 0:
            for index in self._hosts:
                popped = await self._pop_each(index, count)
                if popped:
                    return popped
            if block == 0:
                return []
        # Several hosts: block on each in turn, briefly, so none is starved.
        block = block or (BLOCK_SECONDS if len(self._hosts) == 1 else 0.1)
        index = self._hosts[0]
        self._hosts.append(self._hosts.pop(0))
        popped = await bounded(
            self.layer.connection(index).bzpopmin(self.keys, timeout=block),
            "BZPOPMIN",
            extra=block,
        )
        return [] if popped is None else self._decode([(popped[0], popped[1])])

    async def _pop_each(self, index, count):
        connection = self.layer.connection(index)
        if len(self.keys) == 1:
            popped = [await bounded(connection.zpopmin(self.keys[0], count), "ZPOPMIN")]
        else:
            async with connection.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zpopmin(key, count)
                popped = await bounded(pipe.execute(), "ZPOPMIN")
        return self._decode(
            (key, member)
            for key, members in zip(self.keys, popped, strict=True)
            for member, _ in members
        )

    async def give_back(self, messages):
        """Return messages that were received but will not be run (shutting down)."""
        by_key = {}
        for message in messages:
            if message is not UNDECODABLE:
                key = self._origins.get(id(message), self.keys[0])
                by_key.setdefault(key, []).append(message)
        now = time.time()
        for key, returned in by_key.items():
            await bounded(
                self.layer.connection(self._hosts[0]).zadd(
                    key, {self.layer.serialize(m): now for m in returned}
                ),
                "ZADD",
            )

    def _decode(self, popped):
        """Each member on its own: one that cannot be decoded (another
        serializer, a wrong key, garbage) is skipped, not the batch with it."""
        messages, self._origins = [], {}
        for key, member in popped:
            try:
                message = self.layer.deserialize(member)
            except Exception as exc:  # noqa: BLE001 - any bytes may be on a channel
                _undecodable.warning("undecodable message skipped channel=%s error=%r", key, exc)
                message = UNDECODABLE
            self._origins[id(message)] = key if isinstance(key, str) else key.decode()
            messages.append(message)
        return messages


def done_channel(layer, task_id):
    """The pub/sub channel on which a task's end is announced to `wait()`."""
    return f"{layer.prefix}cq-done:{task_id}"
