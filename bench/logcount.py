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
        # Set by the runner: which scenario the records belong to.
        self.scenario = ""
        self._count_lock = threading.Lock()

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def emit(self, record):
        # The message without its key=value pairs names the event.
        event = " ".join(w for w in str(record.msg).split() if "=" not in w)[:60]
        with self._count_lock:
            self.counts[f"{self.scenario}: {record.name}: {event}"] += 1

    def total(self, scenario=None):
        return sum(
            count
            for key, count in self.counts.items()
            if scenario is None or key.startswith(f"{scenario}: ")
        )
