"""run_all.py with cq in its plan, next to the peers it is compared with.

run_all.py is used as it is (jobs, repetitions interleaved, tables, results/);
only its plan is replaced: cq, django-tasks-db and huey-redis with their
default options, throughput (drain and e2e), latency back to back (notify and
native) and latency after 500 ms idle. --concurrency keeps the throughput jobs
of those worker counts only (c=2 alone skips run_all's --stats job, which
resets the system Redis's INFO counters).

Before every job the task tables of the compared systems are emptied and
vacuumed: each adapter's purge only DELETEs, and where autovacuum is off (as
on the project's PostgreSQL) the dead rows of every earlier job pile up in
the tables and their indexes and slow down the polling queries of the next.

  .venv/bin/python run_cq.py --concurrency 2 --reps 3
  .venv/bin/python run_cq.py --concurrency 2 --quick --only cq
  .venv/bin/python run_cq.py --table RUN_ID
"""

import sys

import psycopg
import run_all
from common import PG
from run_all import L, T

PLAN = [
    ("cq", "bench_cq.py", [], T),
    ("cq", "bench_cq.py", ["latency-notify"], L),
    ("cq", "bench_cq.py", ["latency-native"], L),
    ("django-tasks-db", "bench_django_tasks.py", [], T),
    ("django-tasks-db", "bench_django_tasks.py", ["latency-notify"], L),
    ("django-tasks-db", "bench_django_tasks.py", ["latency-native", "-n", "30"], L),  # ~1 s poll
    ("huey-redis", "bench_huey.py", ["--kind", "redis"], T),
    ("huey-redis", "bench_huey.py", ["--kind", "redis", "latency-notify"], L),
    ("huey-redis", "bench_huey.py", ["--kind", "redis", "latency-native"], L),
    # Huey's result.get() polls from 50 ms unless notify_result is on.
    ("huey-redis", "bench_huey.py", ["--kind", "redis", "--notify", "latency-native"], L),
]
IDLE_GAP = [
    ("cq", "bench_cq.py", []),
    ("django-tasks-db", "bench_django_tasks.py", []),
    ("huey-redis", "bench_huey.py", ["--kind", "redis"]),
]
# The tables the adapters purge (the harness's `bench` database).
TABLES = ["cq_task", "cq_workerheartbeat", "django_tasks_database_dbtaskresult"]


def take_concurrency(argv):
    """Remove `--concurrency 1,2` from argv (run_all does not know it); the counts or None."""
    if "--concurrency" not in argv:
        return None
    k = argv.index("--concurrency")
    counts = argv[k + 1].split(",")
    del argv[k : k + 2]
    return counts


def empty_tables():
    with psycopg.connect(**PG, autocommit=True) as db:  # VACUUM runs outside a transaction
        # cq's tables exist once bench_cq.py has run (it migrates them).
        tables = [t for t in TABLES if db.execute("SELECT to_regclass(%s)", [t]).fetchone()[0]]
        for table in tables:
            db.execute(f"DELETE FROM {table}")
        if tables:
            db.execute(f"VACUUM ANALYZE {', '.join(tables)}")


def worker_count(job):
    """The `-c` of a throughput job; None for the others (latency runs one worker)."""
    args = job[2]
    return args[args.index("-c") + 1] if "-c" in args else None


def main():
    counts = take_concurrency(sys.argv)
    expand = run_all.expand

    def selected(quick):
        jobs = expand(quick)
        if counts is None:
            return jobs
        return [job for job in jobs if worker_count(job) in (None, *counts)]

    run_job = run_all.run_job

    def fresh_run_job(*args, **kwargs):
        empty_tables()
        return run_job(*args, **kwargs)

    run_all.PLAN, run_all.IDLE_GAP, run_all.expand = PLAN, IDLE_GAP, selected
    run_all.run_job = fresh_run_job
    run_all.main()


if __name__ == "__main__":
    main()
