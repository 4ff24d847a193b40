"""Task logs: buffered in the Django cache under the top-level task of a tree,
stored on its row when the whole tree has finished.

Each published line gets its own cache key, numbered by an atomic counter
(`incr`), so subtasks logging at the same moment on different workers never
overwrite each other's lines. That needs a cache shared by all workers, such as
Django's Redis cache; a per-process cache (LocMem) only sees its own lines.
"""

import logging

from django.core.cache import caches
from django.utils import timezone

from .conf import settings as cq_settings

logger = logging.getLogger("cq.tasks")

# Lines wait in the cache at most this long for their tree to finish.
BUFFER_TIMEOUT = 7 * 24 * 3600


def log(task, message, level=logging.INFO, publish=True, limit=40):
    """`cqt.log()`: log to Python logging and buffer the line for the tree."""
    pending = _pending(task)
    pending.append(make_line(task, message, level))
    if publish:
        if limit:
            del pending[:-limit]
        publish_pending(task)


def make_line(task, message, level):
    """Log `message` to Python logging; return the line as the tree's log keeps it."""
    logger.log(level, "task id=%s name=%s %s", task.pk, task.func_name, message)
    return {
        "message": str(message),
        "level": logging.getLevelName(level),
        "timestamp": timezone.now().isoformat(),
        "origin": str(task.pk),
        "task": task.func_name,
    }


def publish_pending(task):
    """Send the lines kept back with `publish=False` to the tree's buffer."""
    pending = _pending(task)
    if not pending:
        return
    lines = list(pending)
    pending.clear()
    task._may_have_tree = True
    cache = _cache()
    top = task.top_id
    cache.add(_counter_key(top), 0, BUFFER_TIMEOUT)
    last = cache.incr(_counter_key(top), len(lines))
    first = last - len(lines) + 1
    cache.set_many(
        {_line_key(top, first + i): line for i, line in enumerate(lines)}, BUFFER_TIMEOUT
    )


def buffered(top_id):
    """The lines buffered so far for the tree under `top_id`, oldest first."""
    cache = _cache()
    count = cache.get(_counter_key(top_id)) or 0
    if not count:
        return []
    found = cache.get_many([_line_key(top_id, n) for n in range(1, count + 1)])
    return [found[key] for key in sorted(found, key=lambda k: int(k.rsplit(":", 1)[1]))]


def store(top_id):
    """Move the tree's buffered lines onto the top-level task's row, inside the
    caller's transaction.

    The buffer is emptied at once, not on commit: one transaction may call this
    twice for a tree (the last subtask finishes its parent, which stores, then
    checks the tree itself), and each line must be stored once. Should the
    transaction roll back, the tree is not finished and these lines are lost.
    """
    from .models import Task

    cache = _cache()
    count = cache.get(_counter_key(top_id)) or 0
    lines = buffered(top_id)
    if not lines:
        return
    stored = Task.objects.values_list("logs", flat=True).get(pk=top_id)
    kept = (stored + lines)[-cq_settings.MAX_LOG_LINES:]
    Task.objects.filter(pk=top_id).update(logs=kept)
    cache.delete_many([_line_key(top_id, n) for n in range(1, count + 1)])
    cache.delete(_counter_key(top_id))


def _pending(task):
    return task.__dict__.setdefault("_pending_logs", [])


def _cache():
    return caches[cq_settings.CACHE]


def _counter_key(top_id):
    return f"cq:logs:{top_id}:n"


def _line_key(top_id, number):
    return f"cq:logs:{top_id}:{number}"
