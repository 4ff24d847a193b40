"""Warnings and errors that cq logs in the bench process while it measures.

A benchmark that loses doorbells (a send that failed, a full channel) would
measure the sweeper instead of the doorbell path; the table says so.
"""

import logging
import threading
from collections import Counter


class LogCounter(logging.Handler):
    def __init__(self, logger_name="cq"):
        super().__init__(level=logging.WARNING)
        self.logger = logging.getLogger(logger_name)
        self.counts = Counter()
        self.first = {}
        self._count_lock = threading.Lock()

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def emit(self, record):
        # The message's words before the first key=value pair name the event.
        event = " ".join(w for w in str(record.msg).split() if "=" not in w)[:60]
        with self._count_lock:
            self.counts[f"{record.name}: {event}"] += 1
            self.first.setdefault(record.name, record.getMessage()[:200])

    def total(self):
        return sum(self.counts.values())
