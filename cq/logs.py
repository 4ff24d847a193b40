"""Task logs: buffered in the Django cache under the top-level task of a tree,
stored on its row when the whole tree has finished.

Logs are best effort and never part of a task's outcome: a line the cache
cannot take (Redis down) is dropped with a warning, and the buffered lines are
moved onto the row after the outcome committed, in a transaction of their own.

Each published line is numbered by an atomic counter (`incr`), so subtasks
logging at the same moment on different workers never overwrite each other's
lines. That needs a cache shared by all workers, such as Django's Redis cache;
a per-process cache (LocMem) only sees its own lines. The buffer is a ring of
CQ_MAX_LOG_LINES slots (line n in slot n mod size): a tree that logs without
end holds that many keys at most, the newest lines, which are the ones the row
would keep.
"""

import logging
import time

from django.core.cache import caches
from django.db import transaction
from django.utils import timezone

from . import storable
from .conf import settings as cq_settings
from .live import events

logger = logging.getLogger("cq.tasks")

# Lines wait in the cache at most this long for their tree to finish.
BUFFER_TIMEOUT = 7 * 24 * 3600

# While the cache is down every task that logs fails alike: say so once per
# this many seconds, with a count, instead of once per line.
WARN_EVERY = 10.0
_dropped = {"lines": 0, "warned": 0.0}


def log(run, message, level=logging.INFO, publish=True, limit=40):
    """`cqt.log()`: log to Python logging and buffer the line for the tree;
    `run` is the RunningTask (cq.running)."""
    pending = run.pending_logs
    pending.append(make_line(run, message, level))
    if publish:
        if limit:
            del pending[:-limit]
        publish_pending(run)
    else:
        del pending[: -cq_settings.MAX_LOG_LINES]


def make_line(task, message, level):
    """Log `message` to Python logging; return the line as the tree's log keeps it."""
    logger.log(level, "task id=%s name=%s %s", task.pk, task.func_name, message)
    return {
        "message": storable.text(str(message)),
        "level": logging.getLevelName(level),
        "timestamp": timezone.now().isoformat(),
        "origin": str(task.pk),
        "task": task.func_name,
    }


def publish_pending(run):
    """Send the lines of `run` kept back with `publish=False` to the tree's
    buffer. Never raises: lines the cache does not take are dropped with a warning."""
    if not run.pending_logs:
        return
    lines = list(run.pending_logs)
    run.pending_logs.clear()
    run.may_have_tree = True
    try:
        _buffer(run.top_id, lines)
        events.log_lines(run.top_id, lines)
    except Exception as exc:  # noqa: BLE001 - any cache failure costs the lines, not the task
        _warn_dropped(run, len(lines), exc)


def buffered(top_id):
    """The lines buffered so far for the tree under `top_id`, oldest first."""
    cache = _cache()
    return _read(cache, top_id, cache.get(_counter_key(top_id)) or 0)


def store(model, top_id):
    """Move the tree's buffered lines onto the top-level task's row, in a
    transaction of its own (call it once the outcome has committed).

    The buffer is emptied only after the commit, so that a reader who reads
    the buffer and then the row (cq.live.state.tree_logs) finds every line in
    one or the other, and a failed commit leaves the lines buffered. Two
    workers that both saw the tree finish store one after the other (the row
    lock); the second may find lines the first stored and has not yet removed
    from the buffer, and skips them."""
    cache = _cache()
    with transaction.atomic():
        stored = (
            model.objects.select_for_update()
            .filter(pk=top_id)
            .values_list("logs", flat=True)
            .first()
        )
        count = cache.get(_counter_key(top_id)) or 0
        on_row = {line_key(line) for line in stored or ()}
        lines = [line for line in _read(cache, top_id, count) if line_key(line) not in on_row]
        if stored is not None and lines:
            kept = (stored + lines)[-cq_settings.MAX_LOG_LINES :]
            model.objects.filter(pk=top_id).update(logs=kept)
    if count:
        cache.delete_many([_line_key(top_id, n) for n in _window(count)])
        cache.delete(_counter_key(top_id))


def line_key(line) -> tuple:
    """What tells one log line from another: when, from which task, what."""
    return (line.get("timestamp"), line.get("origin"), line.get("message"))


def _buffer(top_id, lines):
    lines = lines[-_size() :]
    cache = _cache()
    cache.add(_counter_key(top_id), 0, BUFFER_TIMEOUT)
    last = cache.incr(_counter_key(top_id), len(lines))
    first = last - len(lines) + 1
    cache.set_many(
        {_line_key(top_id, n): (n, line) for n, line in enumerate(lines, first)},
        BUFFER_TIMEOUT,
    )


def _read(cache, top_id, count):
    if not count:
        return []
    numbers = list(_window(count))
    found = cache.get_many([_line_key(top_id, n) for n in numbers])
    lines = []
    for n in numbers:
        entry = found.get(_line_key(top_id, n))
        # A slot holds the line numbered n, or an older one (a slow writer
        # finishing after a newer line took the slot): skip the stale one.
        if entry is not None and entry[0] == n:
            lines.append(entry[1])
    return lines


def _window(count):
    """Numbers of the lines still in the ring after `count` lines: the newest ones."""
    return range(max(1, count - _size() + 1), count + 1)


def _warn_dropped(task, count, exc):
    _dropped["lines"] += count
    now = time.monotonic()
    if now - _dropped["warned"] >= WARN_EVERY:
        logger.warning(
            "task log lines dropped, the cache did not take them id=%s count=%s error=%r",
            task.pk,
            _dropped["lines"],
            exc,
        )
        _dropped.update(lines=0, warned=now)


def _size():
    return max(1, cq_settings.MAX_LOG_LINES)


def _cache():
    return caches[cq_settings.CACHE]


def _counter_key(top_id):
    return f"cq:logs:{top_id}:n"


def _line_key(top_id, number):
    return f"cq:logs:{top_id}:{number % _size()}"
