"""Ringing workers: `run_task` messages on the cq channel, sent from sync code.

A doorbell only says "look at row X"; the row is the truth. So a send that
fails (Redis down, `ChannelFull`) is logged, never raised into the caller: the
row stays QUEUED and the workers' feeder rings it again later (cq.feeder).

Sends go through one sender thread per process, with synchronous clients that
keep their connections, so the caller does not wait for Redis. The process's
event loop (a daemon thread, or a worker's own loop, `use_loop`) serves the
pub/sub of `wait()` and the sends of any other layer (the in-memory one).

Each queue is rung on its own channel (cq.queues.channel_for). On a
channels-redis layer a ring of any number of tasks is one Redis round trip per
queue (`transport.send_many_sync`); any other layer gets plain `layer.send` calls.
Each send has a deadline (CQ_REDIS_TIMEOUT): one that misses it fails like any
other, so the sender is never stuck behind a hung connection.
"""

import asyncio
import atexit
import logging
import os
import threading
import time
from contextlib import contextmanager

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction

from . import transport
from .conf import settings as cq_settings
from .queues import DEFAULT_QUEUE, channel_for

logger = logging.getLogger(__name__)

# Above this many doorbells waiting to be sent (Redis hanging), new rings are
# dropped: the rows stay QUEUED for the feeder, and memory stays bounded.
MAX_IN_FLIGHT = 10_000

# While the channel is full or Redis is down every ring fails the same way:
# say so once per this many seconds, with a count, instead of once per task.
WARN_EVERY = 10.0


class Doorbell:
    """The process's line to Redis. Rings (and announcements of finished tasks)
    are queued here and one sender thread drains the queue with a synchronous
    client: under load many of them leave in one round trip, and a caller pays
    no hop to an event loop (which cost more than the INSERT of `.delay()`)."""

    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()
        self._pending = threading.Condition(self._lock)
        self._sender = None
        self._rings = []
        self._finished = []
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

    def ring(self, task_ids, queue=DEFAULT_QUEUE):
        """Ask a worker of `queue` to run these tasks; returns at once."""
        self.ring_rows([(task_id, queue) for task_id in task_ids])

    def ring_rows(self, rows):
        """`ring` for (task_id, queue) pairs of any queues."""
        if rows and not self._enqueue(self._rings, rows):
            self._warn_unsent(len(rows), "too many doorbells waiting to be sent")

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

    def _enqueue(self, queue, items):
        with self._lock:
            if len(queue) >= MAX_IN_FLIGHT:
                return False
            queue.extend(items)
            self._idle.clear()
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._send_forever, name="cq-doorbell-sender", daemon=True
                )
                self._sender.start()
            self._pending.notify()
        return True

    def _send_forever(self):
        """The sender thread: whatever queued up while it sent last goes in
        the next round trip (a burst of `.delay()` calls rings as one)."""
        while True:
            with self._lock:
                while not self._rings and not self._finished:
                    self._idle.set()
                    self._pending.wait()
                rings, self._rings = self._rings, []
                finished, self._finished = self._finished, []
            layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
            for channel, task_ids in _by_channel(rings):
                self._send_to(layer, channel, task_ids)
            if finished and transport.is_redis(layer):
                _publish_finished(layer, finished)

    def _send_to(self, layer, channel, task_ids):
        messages = [{"type": "run_task", "task_id": str(task_id)} for task_id in task_ids]
        try:
            if transport.is_redis(layer):
                sent = transport.send_many_sync(layer, channel, messages)
            else:
                # Another layer (in-memory) lives on an event loop: send there.
                sent = self.run(_send_plain(layer, channel, messages), cq_settings.REDIS_TIMEOUT)
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


def _by_channel(rings):
    """(channel, task ids) for (task_id, queue) pairs, one entry per queue."""
    by_queue = {}
    for task_id, queue in rings:
        by_queue.setdefault(queue, []).append(task_id)
    return [(channel_for(queue), task_ids) for queue, task_ids in by_queue.items()]


def _publish_finished(layer, task_ids):
    try:
        transport.publish_done_sync(layer, task_ids)
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
# A forked child (cq.time_limits) has no sender thread, and a lock one of the
# parent's threads held stays held there: its doorbell starts afresh.
os.register_at_fork(after_in_child=lambda: Doorbell.__init__(doorbell))
ring = doorbell.ring
flush = doorbell.flush
atexit.register(doorbell.flush)


def ring_rows(rows):
    """Ring for (task_id, queue) pairs, each on its queue's channel."""
    doorbell.ring_rows(rows)


def announce_on_commit(task_ids, using=None):
    """Tell waiters once the current transaction commits that these tasks are final."""
    if task_ids and not inline():  # inline, the caller waits for nothing
        _send_on_commit(using, finished=list(task_ids))


def ring_on_commit(task_ids, queue=DEFAULT_QUEUE, using=None):
    """Ring for `task_ids` of `queue` once the current transaction commits (at once outside of one).

    Running inline (CQ_SERIAL, a direct call), the tasks run at once instead,
    in this thread, through the runner cq.serial installs: a test inside a
    transaction that never commits still sees its tasks run, as with Django's
    ImmediateBackend."""
    if not task_ids:
        return
    if inline():
        _inline_runner(list(task_ids))
    else:
        _send_on_commit(using, rings=[(task_id, queue) for task_id in task_ids])


class _AfterCommit:
    """What one transaction rings and announces when it commits, sent together
    by one on_commit callback: a transaction that queues 100 tasks rings them
    in one round trip."""

    def __init__(self):
        self.rings, self.finished = [], []

    def __call__(self):
        doorbell.ring_rows(self.rings)
        doorbell.announce(self.finished)


def _send_on_commit(using, rings=(), finished=()):
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:  # autocommit: committed already
        doorbell.ring_rows(list(rings))
        doorbell.announce(list(finished))
        return
    # The last callback of this transaction, if it is ours, takes these too.
    # Django drops the callbacks registered in a savepoint that rolls back,
    # ours with them; at worst a doorbell rings for a row that is gone.
    last = connection.run_on_commit[-1][1] if connection.run_on_commit else None
    if not isinstance(last, _AfterCommit):
        last = _AfterCommit()
        transaction.on_commit(last, using=using)
    last.rings.extend(rings)
    last.finished.extend(finished)


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
