"""The `runworker cq-tasks` process.

Unlike channels' stock worker, which pulls every message it can into an
unbounded in-process queue (and loses them all if killed), this one treats a
message only as a doorbell: the table decides what runs. Its slots (cq.slots)
claim due rows of its queues, as many as they are about to start, in one
statement; its loop listens on the queues' channels while the slots wait for
work, and wakes them. A killed worker leaves only the rows it had claimed,
RUNNING, for recovery. SIGTERM/SIGINT stop claiming, let running tasks
finish, hand back what was claimed but not started, and exit 0.

A worker rides out outages: an unreachable Redis or database makes it log,
back off and retry, never exit. While its channel layer is unreachable no
doorbell can ring, so it claims due rows from the table on a jittered poll
(CQ_OUTAGE_POLL_INTERVAL) instead: a Redis outage delays tasks by about that
interval rather than stopping them. Its heartbeat comes from a thread of its
own, so busy task threads and slow housekeeping never make it look dead.
"""

import asyncio
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.apps import apps
from django.db import close_old_connections
from django.utils import timezone

from . import cancelling, feeder, forkserver, housekeeping, recycling
from .conf import settings as cq_settings
from .consumers import task_id_of
from .doorbell import doorbell
from .exceptions import ConfigurationError
from .outages import OutageLog
from .queues import DEFAULT_QUEUE, channel_for, check_queue
from .recycling import Recycler
from .slots import Slots
from .transport import Receiver, is_redis

logger = logging.getLogger(__name__)

# Longest pause between two attempts to reach an unreachable Redis.
MAX_BACKOFF = 5.0
# While its slots are busy, a worker empties its channels of doorbells it does
# not need this often, so that they do not fill up (the table is the backlog).
DISCARD_INTERVAL = 0.2
# Most doorbells popped at once.
POP_MAX = 1000
# How far each outage poll strays from CQ_OUTAGE_POLL_INTERVAL, either way.
POLL_JITTER = 0.25


class Worker:
    def __init__(
        self,
        concurrency=1,
        layer_alias=None,
        scheduler=None,
        burst=False,
        queues=None,
        max_tasks=None,
        max_memory=None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.queues = [check_queue(queue) for queue in (queues or [DEFAULT_QUEUE])]
        self.channels = [channel_for(queue) for queue in self.queues]
        self.layer_alias = layer_alias or cq_settings.CHANNEL_LAYER
        self.scheduler = cq_settings.SCHEDULER if scheduler is None else scheduler
        # Burst mode: exit once no task is left (tests, benchmarks, scripts).
        self.burst = burst
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.model = apps.get_model("cq", "Task")
        self.layer = get_channel_layer(self.layer_alias)
        if self.layer is None:
            raise ConfigurationError(
                f"CQ_CHANNEL_LAYER={self.layer_alias!r} is not in CHANNEL_LAYERS"
            )
        self._receiver = Receiver(self.layer, self.channels) if is_redis(self.layer) else None
        self.slots = Slots(self, concurrency, self.queues)
        self.recycler = Recycler(max_tasks, max_memory)
        if self.recycler.enabled:
            self.slots.budget = self.recycler.budget
            self.slots.after_group = self._recycle_if_due
        # Why this worker is replacing itself (cq.recycling), once it is.
        self.replacing = None
        self._cancels = cancelling.Listener(self, self._terminate)
        self.last_message = time.monotonic()
        # When the channel layer stopped answering this worker (None: it
        # answers); the heartbeat stores it for cq_status.
        self.channel_down_since = None
        self._poll_interval = cq_settings.OUTAGE_POLL_INTERVAL
        self._channel = OutageLog(
            logger,
            "channel layer",
            (
                f"claiming due tasks from the table every {self._poll_interval:g}s"
                if self._poll_interval
                else "tasks wait for it (CQ_OUTAGE_POLL_INTERVAL is off)"
            ),
            recovery="back to doorbells",
        )
        # Since when every heartbeat succeeded (None after a failure), and the
        # last success: see heartbeat_steady().
        self._beating_since = None
        self._last_beat = None
        # Set once the worker serves: a worker run in a thread may be stopped,
        # and its process's doorbells go through its loop.
        self.started = threading.Event()

    def run(self):
        """Serve until stopped; returns the exit status (0). A worker that is
        to be replaced exits with recycling.EXIT_RECYCLE instead."""
        # Before any thread or connection of ours: its copy is clean (cq.forkserver).
        forkserver.start()
        asyncio.run(self.serve())
        if self.replacing:
            recycling.exit_for_replacement(self.name, self.replacing)
        return 0

    def stop(self):
        """Ask the worker to stop (thread-safe): running tasks finish first."""
        self.started.wait()
        self._loop.call_soon_threadsafe(self._stopping.set)

    def replace(self, reason, abandon=()):
        """Stop, then exit to be replaced by a new process (thread-safe);
        `abandon`: ids of tasks whose slot threads are not waited for."""
        self.slots.abandon(abandon)
        if self.replacing is None:
            self.replacing = reason
            logger.info("worker will replace itself name=%s reason=%s", self.name, reason)
            self.stop()

    def _recycle_if_due(self):
        reason = self.recycler.reason(self.handled)
        if reason is not None:
            self.replace(reason)

    def _terminate(self, task_ids):
        # revoke(terminate=True) of tasks in slot threads: only a new process stops them.
        self.replace(f"terminate ids={','.join(sorted(task_ids))}", abandon=task_ids)

    @property
    def idle(self):
        """Waiting on an empty channel: the slots have no work and no message
        came lately. A worker with work in hand is not idle, however old its
        last message."""
        return self.slots.hungry and (
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
        """Ids (str) of the tasks this worker has claimed and not finished."""
        return self.slots.running_ids()

    @property
    def handled(self):
        """How many tasks this worker ran."""
        return self.slots.handled

    async def serve(self):
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._hungry = asyncio.Event()
        self.slots.on_hungry = lambda: self._loop.call_soon_threadsafe(self._hungry.set)
        self._install_signal_handlers()
        doorbell.use_loop(self._loop)
        self.started.set()
        chores = ThreadPoolExecutor(1, thread_name_prefix="cq-housekeeping")
        beats = ThreadPoolExecutor(1, thread_name_prefix="cq-heartbeat")
        # Beat before the first claim, so no task of ours is ever without one.
        await self._loop.run_in_executor(beats, self._beat)
        background = [
            asyncio.create_task(self._heartbeat(beats)),
            asyncio.create_task(self._housekeeping(chores)),
        ]
        if self._poll_interval:
            background.append(asyncio.create_task(self._poll_while_deaf()))
        logger.info(
            "worker started name=%s queues=%s concurrency=%s",
            self.name,
            ",".join(self.queues),
            self.concurrency,
        )
        self.slots.start()
        self._cancels.start()
        try:
            await self._receive_loop()
        finally:
            self._cancels.stop()
            # Running tasks finish; claimed ones not started go back.
            await self._loop.run_in_executor(None, self.slots.stop)
            for job in background:
                job.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._loop.run_in_executor(beats, self._forget)
            for pool in (chores, beats):
                pool.shutdown(wait=True)
            await doorbell.drained()
            doorbell.release_loop(self._loop)
            logger.info("worker stopped name=%s handled=%s", self.name, self.handled)

    async def _receive_loop(self):
        """Wake the slots for each doorbell while they wait for work; while they
        are busy, empty the channels of doorbells now and then."""
        while not self._stopping.is_set():
            # Cleared before the slots are asked, so no signal of theirs is missed.
            self._hungry.clear()
            if self.slots.hungry:
                messages = await self._receive(block=True)
                if messages:
                    self._wake(messages)
                elif self.burst:
                    await self._stop_if_nothing_left()
            else:
                await self._sleep_until_hungry(DISCARD_INTERVAL)
                if not self._stopping.is_set() and not self.slots.hungry:
                    messages = await self._receive(block=False)
                    if messages:
                        self._wake(messages)

    def _channel_failed(self, exc, attempt):
        if self.channel_down_since is None:
            # The heartbeat reports it (cq_status): since the first failed attempt.
            self.channel_down_since = attempt
            self._channel.failed(exc)
            # A task may have been queued just as Redis went: claim at once,
            # not a poll interval later.
            if self._poll_interval:
                self.slots.wake()

    async def _poll_while_deaf(self):
        """While the channel layer is unreachable, no doorbell rings, yet the
        table may hold due rows (queued meanwhile, released by housekeeping,
        handed back by a stopping worker): wake the slots now and then, and
        they claim as after a doorbell, in one statement for every idle slot.
        Only slots that wait for work are woken (busy ones claim by
        themselves after each group), so a busy worker polls nothing, and the
        jitter spreads the claims of many workers that lost Redis at once."""
        while True:
            spread = random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
            await asyncio.sleep(self._poll_interval * spread)
            if self.channel_down_since is not None and self.slots.hungry:
                self.slots.wake()

    def _wake(self, messages):
        self.last_message = time.monotonic()
        for message in messages:
            task_id_of(message)  # says so in the log if it is malformed
        self.slots.wake()

    async def _receive(self, block):
        """Messages on the worker's channels ([] once it is stopping). With
        `block`, wait for one; on a Redis failure, back off and retry."""
        backoff = 0.1
        while not self._stopping.is_set():
            attempt = timezone.now()
            try:
                messages = await self._pop(block)
            except Exception as exc:
                logger.warning(
                    "channel layer receive failed, retrying in %.1fs error=%r", backoff, exc
                )
                self._channel_failed(exc, attempt)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            self.channel_down_since = None
            self._channel.succeeded()
            if self._stopping.is_set():
                await self._give_back(messages)
                return []
            return messages
        return []

    async def _pop(self, block):
        """Messages waiting on the channels, or [] after a short while or once
        the worker is stopping. The receive races the stop signal: SIGTERM
        stops a worker whose Redis hangs without waiting for the deadline (a
        doorbell lost by that cancellation leaves its row QUEUED for the feeder)."""
        if self._receiver is not None:
            wait = (0.5 if self.burst else None) if block else 0
            receive = self._receiver.receive(POP_MAX, block=wait)
            timeout = None
        elif not block:
            return []
        else:
            # Any other channel layer: one message at a time, from the first queue.
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
        return [await self.layer.receive(self.channels[0])]

    async def _give_back(self, messages):
        """Messages that arrived as the worker stopped go back on the channel."""
        try:
            if self._receiver is not None:
                await self._receiver.give_back(messages)
            else:
                for message in messages:
                    await self.layer.send(self.channels[0], message)
        except Exception as exc:
            logger.warning("could not give messages back, left to the feeder error=%r", exc)

    async def _sleep_until_hungry(self, seconds):
        hungry = asyncio.ensure_future(self._hungry.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({hungry, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        hungry.cancel()
        stop.cancel()

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
        if not left and not self.slots.busy:
            self._stopping.set()

    def _tasks_left(self):
        from .models import Task

        close_old_connections()
        # Ring at once for any queued row with no doorbell: in burst mode
        # nobody else will.
        waiting = Task.objects.filter(
            status__in=(Task.STATUS_RETRY, Task.STATUS_QUEUED), queue__in=self.queues
        )
        return bool(feeder.feed(self, timezone.now(), older_than=0)) or waiting.exists()

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
