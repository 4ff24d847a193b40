"""Waiting for a task to finish: pushed, not polled.

A worker that moves a task to a final status PUBLISHes its id on Redis once the
transaction commits (`announce`). `wait()` SUBSCRIBEs first, then reads the
row, then sleeps until the message comes: a task finishing at any moment in
between is seen either by the read or by the message. The row stays the truth:
while waiting, the row is read again every BACKSTOP seconds, so a message lost
with a Redis restart costs at most that long. Without Redis (the in-memory
layer) waiting polls with backoff.

Subscriptions of all threads of a process share one pub/sub connection, served
by the process's doorbell loop. `wait(timeout)` returns within its timeout
even while Redis hangs: subscribing has a deadline, and a wait that cannot
subscribe polls the row instead.
"""

import asyncio
import logging
import os
import threading
import time

from channels.layers import get_channel_layer

from . import statements, transport
from .conf import settings as cq_settings
from .doorbell import doorbell

logger = logging.getLogger(__name__)

# While subscribed, the row is read again this often in case a message was lost.
BACKSTOP = 1.0
# Polling without Redis: first pause and longest pause between reads.
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.25


def wait_for(task, timeout=None):
    """Wait until `task` is done or `timeout` seconds pass; return the row as
    last read (None if it was deleted)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    if transport.is_redis(layer):
        try:
            return _wait_pushed(type(task), task.pk, layer, deadline)
        except Exception as exc:
            logger.warning("pushed wait failed, polling instead id=%s error=%r", task.pk, exc)
    return _wait_polled(type(task), task.pk, deadline)


def _wait_pushed(model, task_id, layer, deadline):
    channel = transport.done_channel(layer, task_id)
    # Subscribing waits for Redis, so it spends the caller's time: no longer
    # than its two bounded steps (SUBSCRIBE, confirmation), nor than what is
    # left of the caller's timeout.
    budget = 2 * cq_settings.REDIS_TIMEOUT
    if deadline is not None:
        budget = max(min(budget, deadline - time.monotonic()), 0)
    event = doorbell.run(hub.subscribe(layer, channel), timeout=budget)
    try:
        while True:
            row = statements.get(model, task_id)
            pause = BACKSTOP if deadline is None else min(BACKSTOP, deadline - time.monotonic())
            if _is_done(row) or pause <= 0:
                return row
            event.wait(pause)
            # Cleared before the next read: a message after it sets it again.
            event.clear()
    finally:
        doorbell.submit(hub.unsubscribe(channel, event))


def _wait_polled(model, task_id, deadline):
    pause = FIRST_PAUSE
    while True:
        row = statements.get(model, task_id)
        if _is_done(row):
            return row
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return row
            pause = min(pause, remaining)
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)


def _is_done(row):
    return row is None or row.is_done


class FinishedHub:
    """One pub/sub connection per process; waiters get a threading.Event per channel.

    A pub/sub connection only reads, so a half-open one would look idle for
    ever: the reader PINGs it when quiet, and a connection that answers
    neither a PING nor a SUBSCRIBE within CQ_REDIS_TIMEOUT is dropped; the
    next wait opens a new one."""

    def __init__(self):
        self._pubsub = None
        self._layer = None
        self._reader = None
        self._events = {}
        self._confirmed = {}

    async def subscribe(self, layer, channel):
        """Subscribe and return once Redis has confirmed it (so no message is missed)."""
        if self._pubsub is not None and self._layer is not layer:
            # CHANNEL_LAYERS changed (tests override it): the old layer's
            # connection may lead to a Redis the workers no longer publish on.
            self._reset(ConnectionError("channel layer replaced"))
        event = threading.Event()
        self._events.setdefault(channel, set()).add(event)
        try:
            if channel not in self._confirmed:
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
                await transport.bounded(self._connection(layer).subscribe(channel), "SUBSCRIBE")
                self._start_reader()
            await asyncio.wait_for(
                asyncio.shield(self._confirmed[channel]), cq_settings.REDIS_TIMEOUT
            )
        except TimeoutError:
            # No answer: the connection is presumed dead; the next wait opens another.
            self._reset(ConnectionError("pub/sub subscription not confirmed in time"))
            raise
        except BaseException:
            # Failed, or cancelled at the caller's own deadline.
            self._forget(channel, event)
            raise
        return event

    async def unsubscribe(self, channel, event):
        self._forget(channel, event)

    def _forget(self, channel, event):
        events = self._events.get(channel, set())
        events.discard(event)
        if not events:
            self._events.pop(channel, None)
            self._confirmed.pop(channel, None)
            if self._pubsub is not None:
                asyncio.get_running_loop().create_task(_unsubscribe(self._pubsub, channel))

    def _connection(self, layer):
        if self._pubsub is None:
            self._layer = layer
            # Done messages always use the first host, whatever the sharding
            # of the channel itself, so publisher and waiter meet.
            self._pubsub = layer.connection(0).pubsub()
        return self._pubsub

    def _start_reader(self):
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(self._pubsub))

    async def _read(self, pubsub):
        try:
            # With nobody waiting the reader ends (no PINGs from an idle
            # process); the next subscribe starts it again.
            while pubsub is self._pubsub and self._events:
                await self._read_or_ping(pubsub)
        except Exception as exc:
            # Waiters fall back on their periodic reads of the row; the next
            # wait starts a new connection.
            logger.warning("pub/sub reader stopped error=%r", exc)
            if pubsub is self._pubsub:
                self._reset(exc)

    async def _read_or_ping(self, pubsub):
        """Dispatch the next message; after CQ_REDIS_TIMEOUT of silence, PING
        and raise if not even the pong comes back in time."""
        quiet = cq_settings.REDIS_TIMEOUT
        message = await transport.bounded(pubsub.get_message(timeout=quiet), "pub/sub read", quiet)
        if message is None:
            await transport.bounded(pubsub.ping(), "pub/sub PING")
            message = await transport.bounded(pubsub.get_message(timeout=quiet), "pub/sub PING")
            if message is None:
                raise ConnectionError(f"pub/sub PING not answered within {quiet:g}s")
        self._dispatch(message)

    def _dispatch(self, message):
        channel = message.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if message["type"] == "subscribe":
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(True)
        elif message["type"] == "message":
            for event in self._events.get(channel, ()):
                event.set()

    def _reset(self, exc):
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.set_exception(ConnectionError(f"pub/sub connection lost: {exc!r}"))
        for events in self._events.values():
            for event in events:
                event.set()
        pubsub, self._pubsub, self._reader = self._pubsub, None, None
        self._events.clear()
        self._confirmed.clear()
        if pubsub is not None:
            # Closing disconnects without a round trip; a dead socket cannot hang it.
            asyncio.get_running_loop().create_task(_close(pubsub))


async def _unsubscribe(pubsub, channel):
    try:
        await transport.bounded(pubsub.unsubscribe(channel), "UNSUBSCRIBE")
    except Exception as exc:  # noqa: BLE001 - a dead connection is replaced at the next wait
        logger.debug("pub/sub unsubscribe failed channel=%s error=%r", channel, exc)


async def _close(pubsub):
    try:
        await transport.bounded(pubsub.aclose(), "pub/sub close")
    except Exception as exc:  # noqa: BLE001 - the connection is being dropped anyway
        logger.debug("pub/sub close failed error=%r", exc)


hub = FinishedHub()
# A forked child (cq.time_limits) shares none of the parent's subscriptions.
os.register_at_fork(after_in_child=lambda: FinishedHub.__init__(hub))
