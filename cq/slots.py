"""A worker's slots: the threads that run tasks, and the claims that feed them.

The table decides what runs; a doorbell only wakes the slots. A slot thread
that needs work takes the next claimed tasks in hand, or, when none is left,
claims for every idle slot at once: one statement takes the due rows of the
worker's queues, highest priority first, then oldest (cq.transitions.claim_batch).
A claim that comes back short means the table is drained: the slots then wait
for a doorbell (`wake`), and the worker's loop listens for one (`hungry`).

A slot runs its tasks in groups (cq.execution.run_group): quick atomic tasks
share one transaction, one savepoint each, and their outcomes one statement.
How many tasks a group holds follows the durations seen lately (GroupSize), so
that a group lasts a few milliseconds: no outcome waits long for its commit,
and a claim takes no more tasks than are about to start.

Every claimed task is counted as held (`running_ids`) from the moment its
claim commits until its outcome has: the sweeper never takes a task of a live
worker for an orphan.
"""

import logging
import threading
import time
from collections import deque

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from . import doorbell, ratelimits, transitions
from .conf import settings as cq_settings
from .execution import run_group
from .outages import OutageLog

logger = logging.getLogger(__name__)

# Longest pause between two claims while the database is unreachable.
MAX_BACKOFF = 5.0
# Seconds a slot's connection may sit unused before it is tried (SELECT 1)
# ahead of a group.
IDLE_CHECK_AFTER = 1.0

_database = OutageLog(logger, "database", "claims paused")


class GroupSize:
    """How many tasks one group may hold: as many as fit, by the durations
    seen lately, in CQ_GROUP_COMMIT_WINDOW. It starts at one and follows a
    moving average of the functions' durations, which a slow task raises at
    once (it counts for half), so that slow work soon runs one task at a time."""

    def __init__(self):
        self._average = None  # seconds; None until a task has run

    def observe(self, seconds):
        average = self._average
        if average is None:
            self._average = seconds
        else:
            weight = 0.5 if seconds > average else 0.1
            self._average = average + weight * (seconds - average)

    def __call__(self):
        window = cq_settings.GROUP_COMMIT_WINDOW
        if not window or self._average is None:
            return 1
        return max(1, min(cq_settings.GROUP_MAX, int(window / max(self._average, 1e-5))))


class Slots:
    def __init__(self, worker, concurrency, queues):
        self.worker = worker
        self.concurrency = concurrency
        self.queues = list(queues)
        self.group_size = GroupSize()
        self._lock = threading.Condition()
        self._ready = deque()  # claimed, not started, best first
        self._idle = 0  # slot threads waiting for work
        self._running = 0  # slot threads running a group
        self._claiming = False
        # The last claim came back short: wait for a doorbell before the next.
        self._drained = False
        self._wakes = 0  # doorbells so far (a claim that raced one is not "drained")
        self._retry_at = 0.0  # after a failed claim: not before this (monotonic)
        self._backoff = 0.1
        self._stopping = False
        self._threads = []
        self.handled = 0  # tasks run (an estimate: counted without a lock)
        # Ids (str) of the tasks claimed here and not yet finished. The lock is
        # held across a claim and by `running_ids`, which so never misses a
        # claim that has committed.
        self._held = set()
        self._held_lock = threading.Lock()
        # Called (from a slot thread) when the slots start waiting for a doorbell.
        self.on_hungry = None
        # Worker recycling (cq.recycling): `budget()` says how many more tasks
        # may be claimed (None: no limit); `after_group()` runs after each group.
        self.budget = None
        self.after_group = None
        # Ids (str) of the tasks each slot thread runs, and those abandoned to
        # a replacement of the process (revoke(terminate=True), cq.cancelling).
        self._groups = {}
        self._abandoned = set()
        self._ended = set()  # slot threads done serving

    # ---- for the worker's loop (any thread)

    def start(self):
        for number in range(self.concurrency):
            thread = threading.Thread(target=self._serve, name=f"cq-slot-{number}")
            thread.start()
            self._threads.append(thread)

    @property
    def hungry(self):
        """Some slot waits for work and the table had none: listen for doorbells."""
        with self._lock:
            return self._drained and self._idle > 0 and not self._ready

    @property
    def busy(self):
        """Slots running a group or about to."""
        with self._lock:
            return self._running + len(self._ready) + self._claiming

    def wake(self):
        """A doorbell rang: the table may hold new work."""
        with self._lock:
            self._wakes += 1
            self._drained = False
            # One slot claims for every idle one; waking all would only make
            # them queue for the GIL to find the claim under way.
            self._lock.notify()

    def stop(self):
        """Let running groups finish, hand back what was claimed but not
        started, and wait for the slot threads (blocking)."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            # A thread running an abandoned task never ends: the process is
            # replaced. Asked again at each change, not once: a terminate heard
            # between a claim and the group's start names a task that no
            # thread runs yet, and the thread that takes it in hand later
            # would be joined for ever.
            self._lock.wait_for(self._only_abandoned_left)
        for thread in self._threads:
            if not self._runs_abandoned(thread):
                thread.join()
        self._unclaim_ready()

    def abandon(self, task_ids):
        """`stop` will not wait for the threads running these tasks."""
        with self._lock:
            self._abandoned.update(str(task_id) for task_id in task_ids)
            self._lock.notify_all()

    def _only_abandoned_left(self):
        return all(t in self._ended or self._runs_abandoned(t) for t in self._threads)

    def _runs_abandoned(self, thread):
        return bool(self._groups.get(thread, set()) & self._abandoned)

    def running_ids(self):
        """Ids (str) of the tasks this worker has claimed and not finished."""
        with self._held_lock:
            return set(self._held)

    # ---- in each slot thread

    def _serve(self):
        last_group = time.monotonic()
        try:
            while True:
                group = self._next_group()
                if group is None:
                    return
                if not self._database_ready(time.monotonic() - last_group):
                    self._put_back(group)
                    continue
                with self._lock:  # `stop` may be waiting to know
                    self._groups[threading.current_thread()] = {str(t.pk) for t in group}
                    self._lock.notify_all()
                try:
                    run_group(group, self.group_size.observe)
                    self.handled += len(group)
                except Exception:  # noqa: BLE001 - the boundary: the sweeper recovers the rows
                    logger.exception("task group failed ids=%s", [str(t.pk) for t in group])
                finally:
                    self._forget(group)
                    with self._lock:
                        self._groups.pop(threading.current_thread(), None)
                        self._running -= 1
                    last_group = time.monotonic()
                    if self.after_group is not None:
                        self.after_group()
        finally:
            close_old_connections()
            with self._lock:
                self._ended.add(threading.current_thread())
                self._lock.notify_all()

    def _database_ready(self, idle_seconds):
        """Whether this thread's connection works, checked before a group runs,
        so that an outage is met here, where the group can wait for the
        database, not by a task's own query, which would fail the task. A
        connection that sat idle for a while is tried first: one cut meanwhile
        looks connected until it is used."""
        close_old_connections()
        try:
            connection.ensure_connection()
            if idle_seconds > IDLE_CHECK_AFTER and not connection.is_usable():
                connection.close()
                connection.ensure_connection()
        except DatabaseError as exc:
            _database.failed(exc)
            connection.close()
            self._pause()
            return False
        _database.succeeded()
        return True

    def _put_back(self, group):
        with self._lock:
            self._running -= 1
            self._ready.extendleft(reversed(group))
            self._lock.notify(len(group))

    def _pause(self):
        """Wait a while before the next claim or group: the database failed."""
        with self._lock:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _next_group(self):
        """The tasks this slot runs next (claimed here first if none is in
        hand), or None once the worker stops."""
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return None
                    wait = self._retry_at - time.monotonic()
                    if self._ready and wait <= 0:
                        size = min(self.group_size(), len(self._ready))
                        self._running += 1
                        return [self._ready.popleft() for _ in range(size)]
                    if not self._claiming and not self._drained and wait <= 0:
                        break
                    if self._drained and self.on_hungry is not None:
                        self.on_hungry()
                    self._idle += 1
                    self._lock.wait(wait if wait > 0 else None)
                    self._idle -= 1
                limit = (self._idle + 1) * self.group_size()
                if self.budget is not None:
                    limit = min(limit, self._budget())
                    if limit <= 0:
                        # A recycling worker claims no more: wait to be stopped.
                        self._drained = True
                        continue
                self._claiming = True
                wakes = self._wakes
            claimed = self._claim(limit)
            admitted = self._admit(claimed)
            with self._lock:
                self._claiming = False
                if claimed is not None:
                    self._ready.extend(admitted)
                    if len(claimed) < limit and self._wakes == wakes:
                        self._drained = True
                    # As many slots as there are tasks to take (this one too).
                    self._lock.notify(len(admitted))

    def _budget(self):
        budget = self.budget(self.handled, len(self._held))
        return float("inf") if budget is None else budget

    def _claim(self, limit):
        """Claim up to `limit` tasks; None (and a pause) if the database failed.
        A stale connection fails here and is replaced before the next try."""
        try:
            with self._held_lock:
                claimed = transitions.claim_batch(
                    self.worker.model, self.queues, limit, self.worker.name, timezone.now()
                )
                self._held.update(str(task.pk) for task in claimed)
        except DatabaseError as exc:
            _database.failed(exc)
            close_old_connections()
            self._pause()
            return None
        _database.succeeded()
        self._backoff = 0.1
        return claimed

    def _admit(self, claimed):
        """The claimed tasks their rate limits let start now; the others went
        back to QUEUED until their time (cq.ratelimits) and are no longer held."""
        if not claimed:
            return claimed
        try:
            admitted = ratelimits.admit(claimed)
        except Exception:  # noqa: BLE001 - a slot thread must survive; the tasks run
            logger.exception("rate limits not checked ids=%s", [str(t.pk) for t in claimed])
            return claimed
        if len(admitted) < len(claimed):
            self._forget([task for task in claimed if task not in admitted])
        return admitted

    def _unclaim_ready(self):
        """Tasks claimed but never started go back to QUEUED (no attempt
        counted) and are rung for the other workers."""
        tasks = list(self._ready)
        self._ready.clear()
        if not tasks:
            return
        try:
            transitions.unclaim(self.worker.model, [t.pk for t in tasks], self.worker.name)
        except DatabaseError as exc:
            # Left RUNNING: the sweeper recovers them once this worker's heartbeat is gone.
            logger.warning("claimed tasks not handed back count=%s error=%s", len(tasks), exc)
        else:
            doorbell.ring_rows([(task.pk, task.queue) for task in tasks])
        finally:
            self._forget(tasks)
            close_old_connections()

    def _forget(self, tasks):
        # One C call on the set, atomic under the GIL: no lock, so a slot that
        # finishes never waits for another one's claim.
        self._held.difference_update([str(task.pk) for task in tasks])
