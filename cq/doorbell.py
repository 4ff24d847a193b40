"""Ringing workers: `run_task` messages on the cq channel, sent from sync code.

A doorbell only says "look at row X"; the row is the truth. So a send that
fails (Redis down, `ChannelFull`) is logged, never raised into the caller: the
row stays QUEUED and the workers' feeder rings it again later (cq.feeder).

Sends go through one long-lived event loop per process (a daemon thread), so
channels-redis keeps its connection pool instead of reconnecting per call, and
the caller does not wait for Redis. A worker process hands its own loop over
(`use_loop`), which also lets the in-memory layer work in a single process.

On a channels-redis layer a ring of any number of tasks is one Redis round
trip (`transport.send_many`); any other layer gets plain `layer.send` calls.
Each send has a deadline (CQ_REDIS_TIMEOUT): one that misses it fails like any
other, so the sender is never stuck behind a hung connection.
"""

import asyncio
import atexit
import logging
import threading
import time
from contextlib import contextmanager
from functools import partial

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction

from . import transport
from .conf import settings as cq_settings

logger = logging.getLogger(__name__)

# Above this many doorbells waiting to be sent (Redis hanging), new rings are
# dropped: the rows stay QUEUED for the feeder, and memory stays bounded.
MAX_IN_FLIGHT = 10_000

# While the channel is full or Redis is down every ring fails the same way:
# say so once per this many seconds, with a count, instead of once per task.
WARN_EVERY = 10.0


class Doorbell:
    """The process's line to Redis. Rings (and announcements of finished tasks)
    are queued here and one sender coroutine drains the queue: under load many
    of them leave in one round trip, over one connection."""

    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()
        self._rings = []
        self._finished = []
        self._sending = False
        self._idle = threading.Event()
        self._idle.set()
        self._unsent = 0
        self._last_warning = 0.0

    def use_loop(self, loop):
        """Send on `loop` (a worker's own) from now on."""
        with self._lock:
            self._loop = loop

    def release_loop(self, loop):
        with self._lock:
            if self._loop is loop:
                self._loop = None

    def ring(self, task_ids):
        """Ask a worker to run these tasks; returns at once."""
        if task_ids and not self._enqueue(self._rings, task_ids):
            self._warn_unsent(len(task_ids), "too many doorbells waiting to be sent")

    def announce(self, task_ids):
        """Tell waiters (`task.wait()`) that these tasks reached a final status."""
        if task_ids:
            self._enqueue(self._finished, task_ids)

    def run(self, coroutine, timeout):
        """Run a coroutine on the doorbell loop and return its result (from
        another thread); after `timeout` seconds cancel it and raise TimeoutError."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._get_loop())
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def submit(self, coroutine):
        """Run a coroutine on the doorbell loop without waiting for it."""
        asyncio.run_coroutine_threadsafe(coroutine, self._get_loop())

    def flush(self, timeout=5.0):
        """Wait up to `timeout` seconds for the queue to be sent."""
        return self._idle.wait(timeout)

    async def drained(self, timeout=5.0):
        """`flush` for a coroutine running on the doorbell's own loop."""
        deadline = time.monotonic() + timeout
        while not self._idle.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _enqueue(self, queue, task_ids):
        with self._lock:
            if len(queue) >= MAX_IN_FLIGHT:
                return False
            queue.extend(task_ids)
            start = not self._sending
            self._sending = True
            self._idle.clear()
        if start:
            self._get_loop().call_soon_threadsafe(self._start_sender)
        return True

    def _start_sender(self):
        asyncio.get_running_loop().create_task(self._sender())

    async def _sender(self):
        while True:
            with self._lock:
                rings, self._rings = self._rings, []
                finished, self._finished = self._finished, []
                if not rings and not finished:
                    self._sending = False
                    self._idle.set()
                    return
            layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
            if rings:
                await self._send(layer, rings)
            if finished and transport.is_redis(layer):
                await _publish_finished(layer, finished)

    async def _send(self, layer, task_ids):
        channel = cq_settings.CHANNEL
        messages = [{"type": "run_task", "task_id": str(task_id)} for task_id in task_ids]
        try:
            if transport.is_redis(layer):
                sent = await transport.send_many(layer, channel, messages)
            else:
                sent = await _send_plain(layer, channel, messages)
        except Exception as exc:
            self._warn_unsent(len(messages), f"send failed: {exc!r}")
            return
        if sent < len(messages):
            self._warn_unsent(len(messages) - sent, f"channel {channel} is full")

    def _warn_unsent(self, count, reason):
        self._unsent += count
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY:
            logger.warning(
                "doorbells not sent, their tasks stay QUEUED for the feeder count=%s reason=%s",
                self._unsent,
                reason,
            )
            self._unsent, self._last_warning = 0, now

    def _get_loop(self):
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="cq-doorbell", daemon=True
                ).start()
            return self._loop


async def _publish_finished(layer, task_ids):
    try:
        async with layer.connection(0).pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.publish(transport.done_channel(layer, task_id), "1")
            await transport.bounded(pipe.execute(), "PUBLISH")
    except Exception as exc:
        # Waiters read the row again every second: a lost message only slows them.
        logger.info("could not announce finished tasks count=%s error=%r", len(task_ids), exc)


async def _send_plain(layer, channel, messages):
    for sent, message in enumerate(messages):
        try:
            await layer.send(channel, message)
        except ChannelFull:
            return sent
    return len(messages)


doorbell = Doorbell()
ring = doorbell.ring
flush = doorbell.flush
atexit.register(doorbell.flush)


def announce_on_commit(task_id, using=None):
    """Tell waiters once the current transaction commits that the task is final."""
    if not inline():  # inline, the caller waits for nothing
        transaction.on_commit(partial(doorbell.announce, [task_id]), using=using)


def ring_on_commit(task_ids, using=None):
    """Ring once the current transaction commits (at once outside of one).

    Running inline (CQ_SERIAL, a direct call), the tasks run at once instead,
    in this thread, through the runner cq.serial installs: a test inside a
    transaction that never commits still sees its tasks run, as with Django's
    ImmediateBackend."""
    if not task_ids:
        return
    if inline():
        _inline_runner(list(task_ids))
    else:
        transaction.on_commit(partial(ring, list(task_ids)), using=using)


# ---- inline: the transport of CQ_SERIAL and of direct calls

_local = threading.local()
# The function that runs tasks inline (cq.serial.run); cq.serial installs it
# when it is imported, which the app's ready() does. It lives above this
# module (it runs tasks, which ring doorbells), hence the installation.
_inline_runner = None


def inline() -> bool:
    """Whether a ring runs its tasks in this thread (CQ_SERIAL, or inside a
    direct call `fn(...)`) instead of going to Redis."""
    return cq_settings.SERIAL or getattr(_local, "direct_calls", 0) > 0


def use_inline_runner(runner) -> None:
    global _inline_runner
    _inline_runner = runner


@contextmanager
def direct_call():
    """Run what is rung inline while the block runs, whatever CQ_SERIAL says."""
    _local.direct_calls = getattr(_local, "direct_calls", 0) + 1
    try:
        yield
    finally:
        _local.direct_calls -= 1
