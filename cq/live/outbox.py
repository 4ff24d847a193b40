"""A thread of its own that sends live events and stores progress.

A task must not wait for Redis or for a second write to its row each time it
reports progress or changes status: it puts a job here and goes on. The jobs
run in order, one at a time, on this thread's own database connection, which
it closes once idle (a connection held by an idle thread would keep test
databases from being dropped and pin a server slot for nothing). Jobs are
best effort: one that fails is logged (throttled), never raised to a task.
"""

import asyncio
import atexit
import logging
import os
import queue
import threading
import time

from django.db import connections

from ..outages import Throttled

logger = logging.getLogger(__name__)

# Seconds without a job after which the thread closes its database connection.
IDLE = 0.5
# Most jobs waiting: past it (Redis down or slow), new events are dropped, not
# buffered without bound in a worker's memory.
MOST_WAITING = 10_000

_failed = Throttled(logger)


class Outbox:
    def __init__(self):
        self._jobs = queue.Queue(MOST_WAITING)
        self._lock = threading.Lock()
        self._thread = None
        self._pid = None
        self._loop = None
        self._rounds = []

    def put(self, job, *args) -> None:
        """Run `job(*args)` on the outbox thread, after the jobs put before it."""
        self._start()
        try:
            self._jobs.put_nowait((job, args))
        except queue.Full:
            _failed.warning("live event dropped, %s waiting job=%s", MOST_WAITING, job.__name__)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to `timeout` seconds for the jobs put so far to be done;
        whether they were. A process about to exit calls it: the thread is a
        daemon, and a task's last event and progress must not die with it."""
        if self._thread is None or self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        jobs = self._jobs
        with jobs.all_tasks_done:
            while jobs.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                jobs.all_tasks_done.wait(remaining)
        return True

    def every_round(self, hook) -> None:
        """Call `hook()` on the outbox thread after each job and each idle wait."""
        if hook not in self._rounds:
            self._rounds.append(hook)
        self._start()

    def run(self, coroutine):
        """Run `coroutine` on this thread's event loop (from a job only): one
        loop for the thread's life, so the channel layer keeps its connections."""
        return self._loop.run_until_complete(coroutine)

    def _start(self):
        # After a fork the thread is gone but the object is not: start anew.
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._jobs = queue.Queue(MOST_WAITING)
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="cq-outbox", daemon=True)
                self._thread.start()

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        while True:
            try:
                job, args = self._jobs.get(timeout=IDLE)
            except queue.Empty:
                connections.close_all()
                self._each_round()
                continue
            try:
                job(*args)
            except Exception as exc:  # noqa: BLE001 - a lost event must not stop the next ones
                _failed.warning("live event not sent job=%s error=%r", job.__name__, exc)
            finally:
                self._jobs.task_done()
            self._each_round()

    def _each_round(self):
        for hook in self._rounds:
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - the outbox must keep running
                _failed.warning("outbox round failed hook=%s error=%r", hook, exc)


outbox = Outbox()
atexit.register(outbox.flush)
