"""`cq_bench_table`: cq's task table at production size, on PostgreSQL.

    cq_bench_table --fill 10000000 --expired 1000000   # finished rows, some expired
    cq_bench_table                                     # table and index sizes
    cq_bench_table --prune                             # cq.tasks.clean_up, timed
    cq_bench_table --remove                            # delete the filler rows

Run `cq_bench --only drain,latency` before and after filling, and while
`--prune` runs in another shell, to see whether the hot path notices
(docs/performance.md, "A large table"). Filler rows carry their own function
name, so the bench's clean-up of its own rows does not touch them.
"""

import time

from django.core.management import BaseCommand, CommandError
from django.db import connection, transaction

from cq.models import Task
from cq.tasks import clean_up

FILLER = "bench.filler"
# Rows per INSERT statement, each its own transaction.
CHUNK = 1_000_000


class Command(BaseCommand):
    help = "Fill cq's task table with finished rows, show its sizes, time its pruning."

    def add_arguments(self, parser):
        parser.add_argument("--fill", type=int, default=0, help="finished rows to add")
        parser.add_argument(
            "--expired",
            type=int,
            default=0,
            help="how many of the added rows have a result_expiry in the past",
        )
        parser.add_argument(
            "--prune", action="store_true", help="run cq.tasks.clean_up once, timed"
        )
        parser.add_argument("--batch", type=int, default=500, help="clean_up's batch size")
        parser.add_argument("--remove", action="store_true", help="delete every filler row")

    def handle(self, *args, fill, expired, prune, batch, remove, **options):
        if connection.vendor != "postgresql":
            raise CommandError("cq_bench_table measures PostgreSQL; use bench.settings_pg")
        if not 0 <= expired <= fill:
            raise CommandError(f"--expired ({expired}) must be between 0 and --fill ({fill})")
        if fill:
            self._fill(fill, expired)
        if prune:
            began = time.perf_counter()
            # The task's body, not a call of the task: an inline run keeps a
            # RUNNING row, which would make the bench refuse to start meanwhile.
            deleted = clean_up.fn(None, batch=batch)
            seconds = time.perf_counter() - began
            rate = deleted / seconds if seconds else 0
            self.stdout.write(
                f"clean_up deleted {deleted:,} rows in {seconds:.1f} s: "
                f"{rate:,.0f} rows/s (batch {batch})"
            )
        if remove:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {_table()} WHERE func_name = %s", [FILLER])
                self.stdout.write(f"removed {cursor.rowcount:,} filler rows")
        _vacuum()
        self.stdout.write(_sizes())

    def _fill(self, rows, expired):
        """Finished top-level rows, oldest first, as months of traffic leave them;
        the first `expired` ones expired an hour ago, the others in a week."""
        began = time.perf_counter()
        for first in range(0, rows, CHUNK):
            last = min(first + CHUNK, rows)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_FILL_SQL.format(table=_table()), [FILLER, expired, first, last - 1])
            self.stdout.write(f"  {last:,} rows added, {time.perf_counter() - began:.0f} s")


def _table():
    return connection.ops.quote_name(Task._meta.db_table)


# Columns with no database default get what a finished no-op task has.
_FILL_SQL = """
INSERT INTO {table} (
    id, func_name, args, kwargs, status, result, error, traceback, logs, force_chain,
    errorbacks, retries, submitted, started, finished, result_expiry, worker,
    priority, queue, backend, attempts
)
SELECT
    gen_random_uuid(), %s, jsonb_build_array(n), '{{}}', 'S', 'null', '', '', '[]', false,
    '[]', 0,
    now() - interval '30 days' + n * interval '1 millisecond',
    now() - interval '30 days' + n * interval '1 millisecond',
    now() - interval '30 days' + n * interval '1 millisecond',
    CASE WHEN n < %s THEN now() - interval '1 hour' ELSE now() + interval '7 days' END,
    'filler:1:000000', 0, 'default', '', '[]'
FROM generate_series(%s::bigint, %s::bigint) AS n
"""


def _vacuum():
    # The test server runs with autovacuum off; production servers vacuum by themselves.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {_table()}")


def _sizes():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), pg_table_size('{Task._meta.db_table}') FROM {_table()}")
        count, table_bytes = cursor.fetchone()
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
            "FROM pg_index WHERE indrelid = %s::regclass ORDER BY 2 DESC",
            [Task._meta.db_table],
        )
        indexes = cursor.fetchall()
    lines = [f"{Task._meta.db_table}: {count:,} rows, table {_mib(table_bytes)}"]
    lines += [f"  index {name}: {_mib(size)}" for name, size in indexes]
    return "\n".join(lines)


def _mib(size):
    return f"{size / 1024 / 1024:,.1f} MiB"
