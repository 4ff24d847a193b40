"""The `runworker cq-tasks` process.

Unlike channels' stock worker, which pulls every message it can into an
unbounded in-process queue (and loses them all if killed), this one receives a
message only when one of its `concurrency` slots is free: a killed worker loses
at most the doorbells of the tasks it was running, whose rows stay RUNNING for
recovery. Each message is handled in isolation; SIGTERM/SIGINT stop receiving,
let running tasks finish and exit 0.

A worker rides out outages: an unreachable Redis or database makes it log,
back off and retry, never exit. Its heartbeat comes from a thread of its own,
so busy task threads and slow housekeeping never make it look dead.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from . import feeder, housekeeping
from .conf import settings as cq_settings
from .consumers import handle_message
from .doorbell import doorbell, ring
from .exceptions import ConfigurationError
from .execution import oldest_queued_id
from .transport import Receiver, is_redis

logger = logging.getLogger(__name__)

# Longest pause between two attempts to reach an unreachable Redis.
MAX_BACKOFF = 5.0


class Worker:
    def __init__(self, concurrency=1, layer_alias=None, scheduler=None, burst=False):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.layer_alias = layer_alias or cq_settings.CHANNEL_LAYER
        self.channel = cq_settings.CHANNEL
        self.scheduler = cq_settings.SCHEDULER if scheduler is None else scheduler
        # Burst mode: exit once no task is left (tests, benchmarks, scripts).
        self.burst = burst
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.layer = get_channel_layer(self.layer_alias)
        if self.layer is None:
            raise ConfigurationError(
                f"CQ_CHANNEL_LAYER={self.layer_alias!r} is not in CHANNEL_LAYERS"
            )
        self._receiver = Receiver(self.layer, self.channel) if is_redis(self.layer) else None
        self.last_message = time.monotonic()
        self.handled = 0
        # Futures of the messages being handled now (touched on the loop only).
        self._running = set()
        # Ids of the tasks this worker holds a message for, counted (two
        # doorbells for one task may be in hand at once); any thread reads it.
        self._holding = Counter()
        self._holding_lock = threading.Lock()
        self._database_down = False
        # When the channel layer stopped answering this worker (None: it
        # answers); the heartbeat stores it for cq_status.
        self.channel_down_since = None
        # Since when every heartbeat succeeded (None after a failure), and the
        # last success: see heartbeat_steady().
        self._beating_since = None
        self._last_beat = None
        # Set once the worker serves: a worker run in a thread may be stopped,
        # and its process's doorbells go through its loop.
        self.started = threading.Event()

    def run(self):
        """Serve until stopped; returns the exit status (0)."""
        asyncio.run(self.serve())
        return 0

    def stop(self):
        """Ask the worker to stop (thread-safe): running tasks finish first."""
        self.started.wait()
        self._loop.call_soon_threadsafe(self._stopping.set)

    @property
    def idle(self):
        """Waiting on an empty channel: a slot is free and no message came lately.
        A worker with every slot busy is not idle, however old its last message."""
        return len(self._running) < self.concurrency and (
            time.monotonic() - self.last_message > cq_settings.HOUSEKEEPING_INTERVAL
        )

    def heartbeat_steady(self):
        """Whether this worker's own heartbeats have all succeeded for a whole
        CQ_WORKER_TIMEOUT, the last one recently: only then may it presume
        other workers dead from theirs (after a database outage, or a pause of
        this process, every heartbeat it reads is old)."""
        if self._beating_since is None:
            return False
        now, timeout = time.monotonic(), cq_settings.WORKER_TIMEOUT
        return now - self._beating_since >= timeout and now - self._last_beat < timeout / 2

    def running_ids(self):
        """Ids (str) of the tasks this worker is handling right now."""
        with self._holding_lock:
            return set(self._holding)

    async def serve(self):
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._install_signal_handlers()
        doorbell.use_loop(self._loop)
        self.started.set()
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cq-task")
        chores = ThreadPoolExecutor(1, thread_name_prefix="cq-housekeeping")
        beats = ThreadPoolExecutor(1, thread_name_prefix="cq-heartbeat")
        # Beat before the first claim, so no task of ours is ever without one.
        await self._loop.run_in_executor(beats, self._beat)
        background = [
            asyncio.create_task(self._heartbeat(beats)),
            asyncio.create_task(self._housekeeping(chores)),
        ]
        logger.info(
            "worker started name=%s channel=%s concurrency=%s",
            self.name,
            self.channel,
            self.concurrency,
        )
        try:
            await self._receive_loop(executor)
        finally:
            for job in background:
                job.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._loop.run_in_executor(beats, self._forget)
            for pool in (executor, chores, beats):
                pool.shutdown(wait=True)
            await doorbell.drained()
            doorbell.release_loop(self._loop)
            logger.info("worker stopped name=%s handled=%s", self.name, self.handled)

    async def _receive_loop(self, executor):
        slots = asyncio.Semaphore(self.concurrency)
        running = self._running
        while not self._stopping.is_set():
            # Bounded prefetch: receive only as many messages as slots are free.
            await slots.acquire()
            if self._database_down:
                await self._wait_for_database(executor)
            free = 1
            while not slots.locked():
                await slots.acquire()
                free += 1
            messages = await self._receive(free)
            for _ in range(free - len(messages)):
                slots.release()
            self.last_message = time.monotonic() if messages else self.last_message
            for message in messages:
                future = self._loop.run_in_executor(executor, self._handle, message)
                running.add(future)
                future.add_done_callback(running.discard)
                future.add_done_callback(lambda _: slots.release())
        # Graceful stop: nothing new starts, running tasks finish.
        if running:
            await asyncio.wait(running)

    async def _receive(self, count):
        """Up to `count` messages; [] once the worker is stopping."""
        backoff = 0.1
        while not self._stopping.is_set():
            attempt = timezone.now()
            try:
                messages = await self._pop(count)
            except Exception as exc:
                logger.warning(
                    "channel layer receive failed, retrying in %.1fs error=%r", backoff, exc
                )
                # The heartbeat reports it (cq_status): since the first failed attempt.
                self.channel_down_since = self.channel_down_since or attempt
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            self.channel_down_since = None
            if self._stopping.is_set():
                await self._give_back(messages)
                return []
            if messages:
                return messages
            if self.burst:
                await self._stop_if_nothing_left()
        return []

    async def _pop(self, count):
        """Messages waiting on the channel, or [] after a short while or once
        the worker is stopping. The receive races the stop signal: SIGTERM
        stops a worker whose Redis hangs without waiting for the deadline (a
        doorbell lost by that cancellation leaves its row QUEUED for the feeder)."""
        if self._receiver is not None:
            receive = self._receiver.receive(count, block=0.5 if self.burst else None)
            timeout = None
        else:
            # Any other channel layer: one message at a time.
            receive, timeout = self._receive_one(), 0.5 if self.burst else None
        receive = asyncio.ensure_future(receive)
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait(
            {receive, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        stop.cancel()
        if receive in done:
            return receive.result()
        receive.cancel()
        await asyncio.gather(receive, return_exceptions=True)
        return []

    async def _receive_one(self):
        return [await self.layer.receive(self.channel)]

    async def _give_back(self, messages):
        """Messages that arrived as the worker stopped go back on the channel."""
        try:
            if self._receiver is not None:
                await self._receiver.give_back(messages)
            else:
                for message in messages:
                    await self.layer.send(self.channel, message)
        except Exception as exc:
            logger.warning("could not give messages back, left to the feeder error=%r", exc)

    def _handle(self, message):
        task_id = str(message.get("task_id")) if isinstance(message, dict) else ""
        try:
            close_old_connections()
            if not self._database_reachable(task_id):
                return
            with self._held(task_id):
                ran = handle_message(message, worker=self.name)
            self.handled += 1
            if ran is None:
                self._run_oldest()
        finally:
            close_old_connections()

    def _run_oldest(self):
        """A message that led to no claim (junk, an unknown or already claimed
        task) still took a turn: run the oldest due QUEUED task instead, so a
        flood of junk that crowds real doorbells out of the channel cannot
        starve the table. The doorbell wakes the worker; the table decides."""
        try:
            task_id = oldest_queued_id()
        except Exception as exc:  # noqa: BLE001 - the boundary: log; the feeder rings again
            logger.warning("could not look for the oldest queued task error=%r", exc)
            return
        if task_id is not None:
            # Held before the claim commits, or recovery would see a RUNNING
            # row of ours that we do not hold and mark it LOST.
            with self._held(str(task_id)):
                handle_message({"type": "run_task", "task_id": str(task_id)}, worker=self.name)

    @contextlib.contextmanager
    def _held(self, task_id):
        """Count `task_id` as running here while the block runs (running_ids)."""
        with self._holding_lock:
            self._holding[task_id] += 1
        try:
            yield
        finally:
            with self._holding_lock:
                self._holding[task_id] -= 1
                if not self._holding[task_id]:
                    del self._holding[task_id]

    def _database_reachable(self, task_id):
        """Connect before claiming; if the database is down, hand the doorbell
        back and make the receive loop wait for the database."""
        try:
            connection.ensure_connection()
            return True
        except DatabaseError as exc:
            logger.warning(
                "database unreachable, doorbell handed back id=%s error=%s", task_id, exc
            )
            self._database_down = True
            if task_id:
                ring([task_id])
            return False

    async def _wait_for_database(self, executor):
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                await self._loop.run_in_executor(executor, _probe_database)
            except DatabaseError as exc:
                logger.warning("database unreachable, retrying in %.1fs error=%s", backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            else:
                logger.warning("database reachable again name=%s", self.name)
                self._database_down = False
                return

    async def _heartbeat(self, beats):
        while True:
            await asyncio.sleep(cq_settings.HEARTBEAT_INTERVAL)
            await self._loop.run_in_executor(beats, self._beat)

    def _beat(self):
        try:
            close_old_connections()
            housekeeping.beat(self, timezone.now())
        except Exception as exc:
            # Not fatal: tasks go on; after CQ_WORKER_TIMEOUT without a beat,
            # other workers will presume this one dead and recover its tasks.
            logger.warning("heartbeat failed name=%s error=%r", self.name, exc)
            self._beating_since = None
            close_old_connections()
        else:
            self._last_beat = time.monotonic()
            if self._beating_since is None:
                self._beating_since = self._last_beat

    async def _housekeeping(self, chores):
        while True:
            await self._loop.run_in_executor(chores, self._housekeeping_round)
            await asyncio.sleep(cq_settings.HOUSEKEEPING_INTERVAL)

    def _housekeeping_round(self):
        close_old_connections()
        housekeeping.run_once(self)

    async def _stop_if_nothing_left(self):
        left = await self._loop.run_in_executor(None, self._tasks_left)
        # A task still running here may yet queue subtasks or chained tasks.
        if not left and not self._running:
            self._stopping.set()

    def _tasks_left(self):
        from .models import Task

        close_old_connections()
        # Ring at once for any queued row with no doorbell: in burst mode
        # nobody else will.
        return (
            bool(feeder.feed(self, timezone.now(), older_than=0))
            or Task.objects.filter(status__in=(Task.STATUS_RETRY, Task.STATUS_QUEUED)).exists()
        )

    def _forget(self):
        try:
            housekeeping.forget(self)
        except Exception:
            logger.exception("could not remove the heartbeat name=%s", self.name)
        finally:
            close_old_connections()

    async def _sleep(self, seconds):
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum):
        logger.info("worker stopping name=%s signal=%s", self.name, signal.Signals(signum).name)
        self._stopping.set()


def _probe_database():
    # A query, not just a connection: a persistent connection cut during the
    # outage looks connected until it is used.
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
