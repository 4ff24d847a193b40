"""Raw database limits under cq's throughput, measured with plain SQL on
cq's own table: what `.delay()` and a worker could reach if cq cost nothing
beyond the statements themselves.

  insert_rate   one thread, one task-like row per INSERT, each its own
                autocommit transaction: the ceiling of `.delay()` outside a
                transaction (which adds a doorbell and Python work on top).
  batch_rate    claim + finish in batches of BATCH rows: one UPDATE ...
                RETURNING claims the oldest QUEUED rows (FOR UPDATE SKIP
                LOCKED on PostgreSQL), one UPDATE finishes them, each its own
                transaction: a ceiling for draining that cq's one-row-per-task
                claim does not try to reach.

Both statements are built once from the model's columns (so a column added
to Task needs no change here) and executed with parameters through the
Django connection's cursor, as cq's own statements are. Only rows of the
bench's task name are touched; the caller deletes them afterwards.
"""

import time
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from cq.models import Task

BATCH = 50


def insert_rate(func_name, count):
    """Rows per second of `count` single-row autocommit INSERTs."""
    sql = _insert_sql()
    template = Task(func_name=func_name, status=Task.STATUS_QUEUED)
    params = _row_params(template)
    id_at, args_at, submitted_at = (_field_index(name) for name in ("id", "args", "submitted"))
    args_field = Task._meta.get_field("args")
    with connection.cursor() as cursor:
        began = time.perf_counter()
        for i in range(count):
            params[id_at] = _prep("id", uuid.uuid4())
            params[args_at] = args_field.get_db_prep_save([i], connection)
            params[submitted_at] = _prep("submitted", timezone.now())
            cursor.execute(sql, params)
        return count / (time.perf_counter() - began)


def batch_rate(func_name, rows):
    """Tasks per second of claiming and finishing `rows` QUEUED rows, BATCH per statement."""
    _queue_rows(func_name, rows)
    claim, finish = _claim_sql(), _finish_sql()
    done = 0
    with connection.cursor() as cursor:
        began = time.perf_counter()
        while True:
            now = timezone.now()
            cursor.execute(claim, [_prep("started", now), func_name])
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                break
            cursor.execute(finish(len(ids)), [_prep("finished", timezone.now()), *_ids(ids)])
            done += len(ids)
        elapsed = time.perf_counter() - began
    if done != rows:
        raise RuntimeError(f"batch calibration finished {done} of {rows} rows")
    return rows / elapsed


def _queue_rows(func_name, rows):
    # Distinct, increasing `submitted` times: the claim takes the oldest first.
    start = timezone.now()
    tasks = [
        Task(
            func_name=func_name,
            args=[i],
            status=Task.STATUS_QUEUED,
            submitted=start + timedelta(microseconds=i),
        )
        for i in range(rows)
    ]
    with transaction.atomic():
        Task.objects.bulk_create(tasks, batch_size=1000)


def _row_params(instance):
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        for field in Task._meta.concrete_fields
    ]


def _field_index(name):
    return [field.name for field in Task._meta.concrete_fields].index(name)


def _prep(name, value):
    return Task._meta.get_field(name).get_db_prep_save(value, connection)


def _ids(ids):
    # PostgreSQL takes the list as one array parameter; SQLite one per id.
    return [list(ids)] if connection.vendor == "postgresql" else list(ids)


def _table():
    return connection.ops.quote_name(Task._meta.db_table)


def _col(name):
    return connection.ops.quote_name(Task._meta.get_field(name).column)


def _insert_sql():
    fields = Task._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    return f"INSERT INTO {_table()} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"


def _claim_sql():
    # SQLite has no row locks (one writer at a time): a plain LIMIT subquery.
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    return (
        f"UPDATE {_table()} SET {_col('status')} = '{Task.Status.RUNNING.value}', "
        f"{_col('started')} = %s "
        f"WHERE {_col('id')} IN (SELECT {_col('id')} FROM {_table()} "
        f"WHERE {_col('status')} = '{Task.Status.QUEUED.value}' AND {_col('func_name')} = %s "
        f"ORDER BY {_col('submitted')} LIMIT {BATCH}{lock}) "
        f"RETURNING {_col('id')}"
    )


def _finish_sql():
    head = (
        f"UPDATE {_table()} SET {_col('status')} = '{Task.Status.SUCCESS.value}', "
        f"{_col('finished')} = %s WHERE {_col('id')} "
    )
    if connection.vendor == "postgresql":
        return lambda count: head + "= ANY(%s)"
    return lambda count: head + f"IN ({', '.join(['%s'] * count)})"
