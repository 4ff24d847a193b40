"""Database statements and transactions counted inside a process.

Every connection of the process (each worker thread has its own) gets an
execute wrapper that counts statements by their first word, and a counting
`commit`. A transaction is either a statement run in autocommit mode or the
commit of an atomic block, which matches what PostgreSQL counts as xact_commit.
Not seen here: statements the driver issues by itself (the PRAGMAs of
`init_command`, connection set-up, psycopg's implicit BEGIN) and rolled-back
transactions.
"""

import os
import threading
import time
from collections import Counter

from django.db import connections
from django.db.backends.signals import connection_created

from . import metrics

# Worker processes count when this environment variable is set.
ENV = "CQ_BENCH_COUNT_SQL"
# ... and publish their running totals every second under this hash name
# (one hash per process, `name:pid`), so a bench can take deltas over a window.
LIVE_ENV = "CQ_BENCH_SQL_LIVE"


class SQLCounter:
    def __init__(self):
        self.counts = Counter()
        self._lock = threading.Lock()

    def install(self):
        connection_created.connect(self._on_connection_created, weak=False)
        for connection in connections.all(initialized_only=True):
            self._watch(connection)
        return self

    def uninstall(self):
        connection_created.disconnect(self._on_connection_created)
        for connection in connections.all(initialized_only=True):
            if self._count_statement in connection.execute_wrappers:
                connection.execute_wrappers.remove(self._count_statement)
            connection.__dict__.pop("commit", None)

    def snapshot(self):
        with self._lock:
            return Counter(self.counts)

    def report(self, hash_name):
        """Add this process's counts to a hash on the metrics Redis."""
        counts = self.snapshot()
        if counts:
            pipe = metrics.client().pipeline(transaction=False)
            for name, value in counts.items():
                pipe.hincrby(metrics.key(hash_name), name, value)
            pipe.execute()

    def publish_every(self, hash_name, seconds=1.0):
        """From a daemon thread, keep this process's running totals in the
        hash `hash_name:pid` on the metrics Redis (see `live_totals`)."""

        def publish():
            while True:
                counts = self.snapshot()
                if counts:
                    metrics.client().hset(
                        metrics.key(f"{hash_name}:{os.getpid()}"), mapping=dict(counts)
                    )
                time.sleep(seconds)

        threading.Thread(target=publish, name="cq-bench-sql", daemon=True).start()

    def _on_connection_created(self, sender, connection, **kwargs):
        self._watch(connection)

    def _watch(self, connection):
        # A wrapper survives reconnections (CONN_MAX_AGE), so watch it once.
        if self._count_statement in connection.execute_wrappers:
            return
        connection.execute_wrappers.append(self._count_statement)
        commit = connection.commit

        def counting_commit():
            self._add("transactions")
            return commit()

        connection.commit = counting_commit

    def _count_statement(self, execute, sql, params, many, context):
        words = sql.split(None, 1) if isinstance(sql, str) else []
        verb = words[0].upper() if words else "?"
        self._add("statements", f"sql_{verb}")
        # Django's own BEGIN (SQLite) opens an atomic block: its commit counts.
        if not context["connection"].in_atomic_block and verb != "BEGIN":
            self._add("transactions")
        return execute(sql, params, many, context)

    def _add(self, *names):
        with self._lock:
            for name in names:
                self.counts[name] += 1


def live_totals(hash_name, pid):
    """The running totals that worker `pid` last published (empty before its first)."""
    totals = metrics.client().hgetall(metrics.key(f"{hash_name}:{pid}"))
    return Counter({name.decode(): int(value) for name, value in totals.items()})
