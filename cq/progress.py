"""`cqt.progress(done, total, message)`: how far a running task has come.

A task may report progress in a tight loop, so reports are coalesced: the
latest one is stored on the row (`Task.progress`) and published to the
watchers of its tree (cq.live) at most once per CQ_PROGRESS_INTERVAL, and
the last one when the run ends. Both happen on the outbox thread, on a
connection of its own: an atomic task's progress would otherwise stay
invisible inside its transaction until it ended, and no report makes the
task wait for the database or Redis. Running inline (CQ_SERIAL, a direct
call), and in an atomic task on SQLite, the row is written in the task's own
transaction instead: visible once it commits (published at once all the same);
inline, an `async def` task's reports are stored when its run ends.
"""

import asyncio
import numbers
import time

from django.db import router, transaction
from django.utils import timezone

from . import doorbell, storable
from .conf import settings as cq_settings
from .exceptions import InvalidProgress
from .live import events
from .live.outbox import outbox

# Longest message kept with a report; a progress line is a caption, not a log.
MESSAGE_LENGTH = 200


class Progress:
    """The progress of one run: its latest report and when one last went out."""

    def __init__(self):
        self.latest = None
        self.sent_at = None
        # The latest report sent but not stored yet (inline, from a coroutine).
        self.unstored = None

    def report(self, run, done, total=None, message=""):
        self.latest = make_report(done, total, message)
        now = time.monotonic()
        finished = total is not None and done >= total
        due = self.sent_at is None or now - self.sent_at >= cq_settings.PROGRESS_INTERVAL
        if due or finished:
            self.send(run)

    def send(self, run):
        """Store and publish the latest report, if it has not gone out yet."""
        if self.latest is None:
            return
        value, self.latest, self.sent_at = self.latest, None, time.monotonic()
        task = run.task
        task.progress = value
        events.progress(task, value)
        if not _store_here(task):
            outbox.put(_store, type(task), task.pk, task.retries, value)
        elif _on_event_loop():
            # Inline, a coroutine reports on its event loop, where the ORM may
            # not run: the run's end (`finish`, a sync frame) stores it.
            self.unstored = value
        else:
            _store(type(task), task.pk, task.retries, value)
            self.unstored = None

    def finish(self, run):
        """The run ended: send the report held back, store one left unstored."""
        self.send(run)
        if self.unstored is not None:
            task = run.task
            _store(type(task), task.pk, task.retries, self.unstored)
            self.unstored = None


def make_report(done, total=None, message=""):
    """The stored form of a report, or InvalidProgress naming the bad value."""
    if not _is_number(done) or done < 0:
        raise InvalidProgress(f"progress done={done!r} must be a number >= 0, e.g. 3")
    if total is not None:
        if not _is_number(total) or total <= 0:
            raise InvalidProgress(f"progress total={total!r} must be a number > 0 or None")
        if done > total:
            raise InvalidProgress(f"progress done={done!r} is above total={total!r}")
    if not isinstance(message, str):
        raise InvalidProgress(f"progress message={message!r} must be a str")
    return {
        "done": done,
        "total": total,
        "message": storable.text(message[:MESSAGE_LENGTH]),
        "updated": timezone.now().isoformat(),
    }


def percent(progress) -> float | None:
    """0..100 from a stored report with a total; None without one."""
    if not progress or not progress.get("total"):
        return None
    return round(100.0 * progress["done"] / progress["total"], 1)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _on_event_loop():
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _store_here(task):
    """Whether to write the report in the task's own transaction: inline (the
    caller's transaction is all there is), or in an atomic task on SQLite, which
    holds the database's one write lock until it ends: the outbox would wait
    for it, and every event behind the write with it."""
    if doorbell.inline():
        return True
    connection = transaction.get_connection(router.db_for_write(type(task)))
    return connection.vendor == "sqlite" and connection.in_atomic_block


def _store(model, task_id, attempt, value):
    # Guarded by the attempt: a worker presumed dead, whose task was requeued,
    # must not overwrite the progress of the attempt running now.
    model.objects.filter(pk=task_id, retries=attempt).update(progress=value)
