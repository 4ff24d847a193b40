"""Queues and priorities: their valid values, and the channel each queue is rung on.

A task belongs to one queue (`"default"` unless `@task(queue=...)` or
`delay_args(queue=...)` says otherwise) and has a priority from -100 to 100
(the range of Django's `django.tasks`; higher runs first, first come first
served within a priority). A worker serves the queues it is started with
(`runworker cq-tasks --queues emails,default`) and claims only their rows.

Each queue has its own channel, so that a worker is woken only for its
queues: the default queue keeps the channel it always had (CQ_CHANNEL,
`cq-tasks`, which channels' stock worker can also serve), and queue `emails`
is rung on `cq-tasks.emails`. A worker of several queues blocks on all of
their channels at once (one BZPOPMIN over several keys).
"""

import re

from .conf import settings as cq_settings
from .exceptions import InvalidTaskOption

DEFAULT_QUEUE = "default"
MIN_PRIORITY, MAX_PRIORITY = -100, 100
# Letters, digits, "_" and "-": a queue name becomes part of a channel name,
# which Channels limits to 100 characters.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_queue(queue: object) -> str:
    """`queue` if it is a valid queue name; InvalidTaskOption otherwise."""
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise InvalidTaskOption(
            f"queue must be a name of 1 to 64 letters, digits, '_' or '-', got {queue!r}"
        )
    return queue


def check_priority(priority: object) -> int:
    """`priority` if it is an integer from -100 to 100; InvalidTaskOption otherwise."""
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise InvalidTaskOption(
            f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs first), got {priority!r}"
        )
    return priority


def parse_queues(text: str) -> list[str]:
    """The queues of `--queues emails,default`, checked, in the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidTaskOption("--queues needs at least one queue name, e.g. --queues default")
    return list(dict.fromkeys(check_queue(name) for name in names))


def channel_for(queue: str) -> str:
    """The channel on which the tasks of `queue` are rung."""
    if queue == DEFAULT_QUEUE:
        return cq_settings.CHANNEL
    return f"{cq_settings.CHANNEL}.{queue}"
