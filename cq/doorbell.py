"""Ringing workers: `run_task` messages on the cq channel, sent from sync code.

A doorbell only says "look at row X"; the row is the truth. So a send that
fails (Redis down, `ChannelFull`) is logged, never raised into the caller: the
row stays QUEUED and the workers' sweeper rings it again later.

Sends go through one long-lived event loop per process (a daemon thread), so
channels-redis keeps its connection pool instead of reconnecting per call, and
the caller does not wait for Redis. A worker process hands its own loop over
(`use_loop`), which also lets the in-memory layer work in a single process.
"""

import asyncio
import atexit
import logging
import threading
from concurrent.futures import wait as wait_futures
from functools import partial

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction

from .conf import settings as cq_settings

logger = logging.getLogger(__name__)

# Above this many sends in flight (Redis hanging), new rings are dropped: the
# rows stay QUEUED for the sweeper, and the process's memory stays bounded.
MAX_IN_FLIGHT = 10_000
# Sends of a bulk ring that are in flight at once.
BATCH = 64


class Doorbell:
    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()
        self._in_flight = set()

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
        if not task_ids:
            return
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            logger.warning("doorbell backlog full, left to the sweeper count=%s", len(task_ids))
            return
        future = asyncio.run_coroutine_threadsafe(self._send(task_ids), self._get_loop())
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    def in_flight(self):
        """The sends not finished yet (concurrent.futures.Future objects)."""
        return [future for future in list(self._in_flight) if not future.done()]

    def flush(self, timeout=5.0):
        """Wait up to `timeout` seconds for the sends in flight."""
        pending = self.in_flight()
        if pending:
            wait_futures(pending, timeout=timeout)

    async def _send(self, task_ids):
        layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
        channel = cq_settings.CHANNEL
        ids = [str(task_id) for task_id in task_ids]
        try:
            for start in range(0, len(ids), BATCH):
                await asyncio.gather(*(
                    layer.send(channel, {"type": "run_task", "task_id": task_id})
                    for task_id in ids[start:start + BATCH]
                ))
        except ChannelFull:
            logger.warning("channel full, left to the sweeper channel=%s", channel)
        except Exception:
            logger.exception("doorbell send failed, left to the sweeper count=%s", len(ids))

    def _get_loop(self):
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="cq-doorbell", daemon=True
                ).start()
            return self._loop


doorbell = Doorbell()
ring = doorbell.ring
atexit.register(doorbell.flush)


def ring_on_commit(task_ids, using=None):
    """Ring once the current transaction commits (at once outside of one)."""
    if task_ids:
        transaction.on_commit(partial(ring, list(task_ids)), using=using)
