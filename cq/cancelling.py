"""Cancelling a running task: `revoke()` reaches the task's worker, pushed.

`revoke()` marks the rows REVOKED in the caller's transaction; once it
commits, the ids of the revoked rows a worker had claimed are PUBLISHed on one
Redis pub/sub channel (`cq-cancel`). Every worker listens there from a thread
of its own (`Listener`) and keeps the ids of the tasks it runs: each reads
`cqt.cancelled` from memory, so a task may check it in a tight loop, and no
worker polls the database. A task run in a child process (a time-limited one,
cq.time_limits) learns it from a signal its worker sends it.

With `terminate=True` the task is stopped rather than told: a child process is
killed; a task run in a slot thread, which nothing can stop from outside, is
abandoned and the worker process exits to be replaced (cq.recycling) once its
other running tasks are done. Either way the row stays REVOKED: the guarded transitions
discard whatever the task or its worker would record afterwards.

The row is the truth: a message lost while a worker was not subscribed (Redis
restarting) is made up when it subscribes again, from one read of the rows it runs.
"""

import json
import logging
import threading
import time
from contextlib import contextmanager
from functools import partial

from channels.layers import get_channel_layer
from django.db import connection, transaction

from . import time_limits, transport
from .conf import settings as cq_settings

logger = logging.getLogger(__name__)

# Most ids read in one query.
BATCH = 500

# Ids (str) of the tasks running in this process that were revoked.
_cancelled: set[str] = set()
# Task id (str) -> what to call when it is revoked: an `async def` task's
# cancel (cq.coroutines). Reentrant: in a child process `mark` runs in a signal
# handler, which may interrupt `watching` in the same thread.
_watchers: dict[str, list] = {}
_watchers_lock = threading.RLock()


def mark(task_ids):
    """Note that these running tasks were revoked (what `cqt.cancelled` reads)."""
    ids = {str(task_id) for task_id in task_ids}
    _cancelled.update(ids)
    with _watchers_lock:
        callbacks = [callback for task_id in ids for callback in _watchers.get(task_id, ())]
    for callback in callbacks:
        callback()


@contextmanager
def watching(task_id, callback):
    """Within the block, call `callback` (from whichever thread hears it) when
    the task is revoked; at once if it already was."""
    task_id = str(task_id)
    with _watchers_lock:
        _watchers.setdefault(task_id, []).append(callback)
    try:
        if is_cancelled(task_id):
            callback()
        yield
    finally:
        with _watchers_lock:
            _watchers[task_id].remove(callback)
            if not _watchers[task_id]:
                del _watchers[task_id]


def is_cancelled(task_id) -> bool:
    return str(task_id) in _cancelled


def channel(layer):
    return f"{layer.prefix}cq-cancel"


def push_on_commit(model, task_ids, now, terminate=False):
    """Once the caller's transaction commits, tell the workers of the rows
    among `task_ids` that were revoked at `now` while a worker held them."""
    held = []
    for start in range(0, len(task_ids), BATCH):
        held += model.objects.filter(
            pk__in=task_ids[start : start + BATCH],
            status=model.STATUS_REVOKED,
            finished=now,
            started__isnull=False,
        ).values_list("pk", flat=True)
    if held:
        transaction.on_commit(partial(publish, [str(pk) for pk in held], terminate))


def publish(task_ids, terminate=False):
    """PUBLISH a cancel; never raises (the revoke stands whatever Redis does)."""
    layer = get_channel_layer(cq_settings.CHANNEL_LAYER)
    if not transport.is_redis(layer):
        return  # in-memory layer: one process, and the outcome is discarded anyway
    message = json.dumps({"ids": list(task_ids), "terminate": bool(terminate)})
    try:
        transport.sync_clients(layer)[0].publish(channel(layer), message)
    except Exception as exc:  # noqa: BLE001 - the row is REVOKED; its end is discarded
        logger.warning("cancel not pushed count=%s error=%r", len(task_ids), exc)


class Listener:
    """A worker's ear for cancels, in a daemon thread: `on_terminate(ids)` is
    called for tasks to stop that run in this process's slot threads."""

    def __init__(self, worker, on_terminate):
        self.worker = worker
        self.on_terminate = on_terminate
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        layer = get_channel_layer(self.worker.layer_alias)
        if not transport.is_redis(layer):
            return
        self._thread = threading.Thread(
            target=self._run, args=(layer,), name="cq-cancel-listener", daemon=True
        )
        self._thread.start()

    def stop(self):
        self._stopping.set()

    def _run(self, layer):
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                self._listen(layer)
                backoff = 0.1
            except Exception as exc:  # noqa: BLE001 - reconnect, and catch up from the rows
                logger.warning("cancel listener reconnecting error=%r", exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _listen(self, layer):
        pubsub = transport.sync_clients(layer)[0].pubsub()
        try:
            pubsub.subscribe(channel(layer))
            heard, pinged = time.monotonic(), False
            quiet = cq_settings.REDIS_TIMEOUT
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    heard, pinged = now, False
                    self._dispatch(message)
                elif now - heard > 2 * quiet and pinged:
                    # A half-open connection looks idle for ever: a PING unanswered ends it.
                    raise ConnectionError(f"pub/sub PING not answered within {quiet:g}s")
                elif now - heard > quiet and not pinged:
                    pubsub.ping()
                    pinged = True
        finally:
            pubsub.close()

    def _dispatch(self, message):
        if message["type"] == "subscribe":
            self._catch_up()
        elif message["type"] == "message":
            try:
                data = json.loads(message["data"])
                ids, terminate = set(data["ids"]), bool(data.get("terminate"))
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("cancel message ignored error=%r", exc)
                return
            self.cancel(ids, terminate)

    def cancel(self, task_ids, terminate=False):
        """Cancel those of `task_ids` that run here."""
        running = self.worker.running_ids()
        ids = {str(task_id) for task_id in task_ids} & running
        # Ids of tasks that ended meanwhile are dropped: the set stays small.
        _cancelled.intersection_update(running)
        if not ids:
            return
        mark(ids)
        logger.info("task cancel received ids=%s terminate=%s", sorted(ids), terminate)
        # A task in a child process gets a signal; one in a slot thread reads the mark.
        in_threads = [pk for pk in ids if not time_limits.signal_child(pk, terminate)]
        if terminate and in_threads:
            self.on_terminate(in_threads)

    def _catch_up(self):
        """Revokes published while this worker was not subscribed: from the rows."""
        from .models import Task

        running = list(self.worker.running_ids())
        if not running:
            return
        try:
            revoked = []
            for start in range(0, len(running), BATCH):
                revoked += Task.objects.filter(
                    pk__in=running[start : start + BATCH], status=Task.STATUS_REVOKED
                ).values_list("pk", flat=True)
        finally:
            connection.close()  # this thread reads the database only here
        self.cancel(revoked)
