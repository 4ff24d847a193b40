"""Benchmark settings on SQLite (WAL): `--settings bench.settings_sqlite`.

Environment (besides those of settings_base): CQ_BENCH_SQLITE_PATH, default
<tmp>/cq-bench.sqlite3. Run `migrate` with these settings once before benchmarking.
"""

import os
import tempfile

from .settings_base import *  # noqa: F401,F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "CQ_BENCH_SQLITE_PATH", os.path.join(tempfile.gettempdir(), "cq-bench.sqlite3")
        ),
        "CONN_MAX_AGE": 600,
        "OPTIONS": {
            # Writers queue for the lock instead of failing when a read
            # transaction upgrades; WAL lets readers and the writer overlap.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
