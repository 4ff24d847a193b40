"""Benchmark settings on PostgreSQL: `--settings bench.settings_pg`.

Environment (besides those of settings_base): CQ_BENCH_PG_NAME (default
"cq_bench"), CQ_BENCH_PG_USER ("postgres"), CQ_BENCH_PG_PASSWORD (""),
CQ_BENCH_PG_HOST ("127.0.0.1"), CQ_BENCH_PG_PORT ("5432"). Create the database
and run `migrate` with these settings once before benchmarking.
"""

import os

from .settings_base import *  # noqa: F401,F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CQ_BENCH_PG_NAME", "cq_bench"),
        "USER": os.environ.get("CQ_BENCH_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("CQ_BENCH_PG_PASSWORD", ""),
        "HOST": os.environ.get("CQ_BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("CQ_BENCH_PG_PORT", "5432"),
        # One connection per process for the whole run, as in production.
        "CONN_MAX_AGE": 600,
    }
}
