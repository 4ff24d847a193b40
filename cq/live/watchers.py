"""Whether anyone watches a task live right now.

Publishing an event costs a query and Redis round trips; a worker running
thousands of tasks that nobody watches would pay them all (measured: a third
of the throughput of no-op tasks). So a watcher marks itself in the cache
(renewed while it is connected), each process reads the mark every
CHECK_EVERY seconds on its outbox thread, and events are published only
while a mark is there.
A watcher waits SETTLE seconds after marking before it reads the tree's
state: every event the workers drop before they see the mark happened before
that read, so it is in the state.
"""

import time

from django.core.cache import caches

from ..conf import settings as cq_settings
from .outbox import outbox

KEY = "cq:live:watching"
# Seconds a mark lasts; a connected watcher renews it every RENEW seconds.
TTL = 30.0
RENEW = 10.0
# Seconds between two reads of the mark by a process.
CHECK_EVERY = 0.5
# Seconds a new watcher waits before it reads the state: a read of the mark,
# and the outbox's round that does it (cq.live.outbox.IDLE), with a margin.
SETTLE = 1.5


class Watchers:
    def __init__(self):
        self.seen = None
        self.checked = 0.0

    def anyone(self) -> bool:
        """Whether a watcher's mark was seen (at most CHECK_EVERY seconds ago)."""
        if self.seen is None:
            # First event of this process: the outbox thread reads the mark
            # from now on. Until its first read, publish: an event dropped for
            # want of a read could be the start of a task a watcher waits for,
            # and the task's own thread must not wait for the cache.
            outbox.every_round(self.refresh)
            return True
        return self.seen

    def refresh(self) -> None:
        """Read the mark (on the outbox thread), at most once per CHECK_EVERY."""
        now = time.monotonic()
        if self.seen is not None and now - self.checked < CHECK_EVERY:
            return
        self.checked = now
        try:
            self.seen = bool(caches[cq_settings.CACHE].get(KEY))
        except Exception:  # noqa: BLE001 - no cache, no Redis: nothing could be sent anyway
            self.seen = False


def mark() -> None:
    """A watcher is connected: publish events for the next TTL seconds."""
    caches[cq_settings.CACHE].set(KEY, True, TTL)


watchers = Watchers()
