"""Single SQL statements on a model's table, without the ORM's query building.

Every task pays for the statements of its lifecycle, so they skip the ORM's
query building (which cost more CPU than the database round trip itself) but
keep its value conversion: parameters go through each field's
`get_db_prep_save`, and returned rows through the same converters the ORM
applies, so JSON, UUIDs and datetimes behave as everywhere else. PostgreSQL
and SQLite (3.35+) support `RETURNING`. Only cq.transitions changes a status
with them.
"""

from functools import cache

from django.db import connections, router


def claim(model, task_id, worker, now, queued, running):
    """QUEUED (and due) -> RUNNING in one statement; the claimed row, or None."""
    db = router.db_for_write(model)
    connection = connections[db]
    sql = _claim_sql(model, connection.vendor)
    params = [
        _prep(model, "status", running, connection),
        _prep(model, "started", now, connection),
        _prep(model, "worker", worker, connection),
        _prep(model, "id", task_id, connection),
        _prep(model, "status", queued, connection),
        _prep(model, "run_after", now, connection),
    ]
    return _fetch_instance(model, db, sql, params)


def claim_batch(model, queues, limit, worker, now, queued, running):
    """Up to `limit` due QUEUED rows of `queues` -> RUNNING in one statement,
    highest priority first, then oldest; the claimed rows in that order.

    On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so workers
    claiming at the same moment take different rows instead of waiting for
    each other; SQLite has one writer at a time anyway. Each queue is read
    through its own index range (queue, -priority, submitted), so a claim
    costs the same with a backlog of any size."""
    db = router.db_for_write(model)
    connection = connections[db]
    sql = _claim_batch_sql(model, connection.vendor, len(queues))
    params = [
        _prep(model, "status", running, connection),
        _prep(model, "started", now, connection),
        _prep(model, "worker", worker, connection),
    ]
    for queue in queues:
        params += [_prep(model, "status", queued, connection), queue, limit]
    params += [limit, _prep(model, "status", queued, connection)]
    claimed = _fetch_instances(model, db, sql, params)
    claimed.sort(key=lambda task: (-task.priority, task.submitted))
    return claimed


def get(model, task_id):
    """The row as a model instance, or None: `objects.get()` without the ORM's
    query building (what `wait()` reads while it waits)."""
    db = router.db_for_read(model)
    connection = connections[db]
    return _fetch_instance(
        model, db, _select_sql(model, db), [_prep(model, "id", task_id, connection)]
    )


def insert(instance):
    """INSERT one new row (its primary key set by the caller), without the
    ORM's save machinery: no signals are sent for task rows."""
    model = type(instance)
    db = router.db_for_write(model)
    connection = connections[db]
    fields = model._meta.concrete_fields
    params = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, db), params)
    instance._state.adding = False
    instance._state.db = db


def move(model, task_id, expected, attempt=None, **fields):
    """Update `fields` of the row if its status is `expected` (and, given an
    `attempt`, its `retries` count is that: the row is still at that attempt).

    Returns None if the row was not in that status; otherwise the number of
    PENDING tasks chained after it, found in the same statement, so that the
    common task, with no chain, needs no second query.
    """
    db = router.db_for_write(model)
    connection = connections[db]
    names = tuple(sorted(fields))
    sql = _move_sql(model, names, connection.vendor, attempt is not None)
    params = [_prep(model, name, fields[name], connection) for name in names]
    params += [
        _prep(model, "id", task_id, connection),
        _prep(model, "status", expected, connection),
    ]
    if attempt is not None:
        params.append(_prep(model, "retries", attempt, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [_prep(model, "status", model.STATUS_PENDING, connection)])
        row = cursor.fetchone()
        return None if row is None else row[0]


def lock_running(model, task_ids, worker, running):
    """Lock the rows of `task_ids` that are RUNNING on `worker`, until the
    transaction ends; returns {id: retries} of those. On SQLite, which locks
    the whole database for a writer, a no-op UPDATE takes the write lock."""
    db = router.db_for_write(model)
    connection = connections[db]
    sql = _lock_running_sql(model, connection.vendor, len(task_ids))
    params = [_prep(model, "id", task_id, connection) for task_id in task_ids]
    params += [_prep(model, "status", running, connection), worker]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    convert = model._meta.get_field("id").to_python
    return {convert(task_id): retries for task_id, retries in rows}


def finish_many(model, rows, status, expected, finished):
    """`expected` -> `status` for several rows at once, each with its own
    `result` and `result_expiry`: `rows` holds (id, retries, result,
    result_expiry). Returns {id: number of PENDING tasks chained after it}
    for the rows that were still in `expected` at that attempt."""
    db = router.db_for_write(model)
    connection = connections[db]
    if connection.vendor != "postgresql":
        # No network between SQLite and us: one statement per row costs nothing more.
        followers = {}
        for task_id, retries, result, expiry in rows:
            count = move(
                model,
                task_id,
                expected,
                attempt=retries,
                status=status,
                result=result,
                result_expiry=expiry,
                finished=finished,
                error="",
                traceback="",
            )
            if count is not None:
                followers[task_id] = count
        return followers
    params = [
        _prep(model, "status", status, connection),
        _prep(model, "finished", finished, connection),
    ]
    for task_id, retries, result, expiry in rows:
        params += [
            _prep(model, "id", task_id, connection),
            _prep(model, "retries", retries, connection),
            _prep(model, "result", result, connection),
            _prep(model, "result_expiry", expiry, connection),
        ]
    params += [
        _prep(model, "status", expected, connection),
        _prep(model, "status", model.STATUS_PENDING, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_finish_many_sql(model, len(rows)), params)
        result_rows = cursor.fetchall()
    convert = model._meta.get_field("id").to_python
    return {convert(task_id): count for task_id, count in result_rows}


def _fetch_instance(model, db, sql, params):
    instances = _fetch_instances(model, db, sql, params)
    return instances[0] if instances else None


def _fetch_instances(model, db, sql, params):
    connection = connections[db]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    fields, converters = _row_reading(model, db)
    return [
        model.from_db(
            db,
            fields,
            [
                _convert(value, converter_list, connection)
                for value, converter_list in zip(row, converters, strict=True)
            ],
        )
        for row in rows
    ]


@cache
def _select_sql(model, db):
    quote = connections[db].ops.quote_name
    columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
    return f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {_col(model, 'id')} = %s"


@cache
def _row_reading(model, db):
    """Field names and, per column, the converters the ORM would apply."""
    connection = connections[db]
    names, converters = [], []
    for field in model._meta.concrete_fields:
        column = field.get_col(model._meta.db_table)
        names.append(field.attname)
        converters.append(
            [(c, column) for c in connection.ops.get_db_converters(column)]
            + [(c, column) for c in column.get_db_converters(connection)]
        )
    return names, converters


def _convert(value, converter_list, connection):
    for converter, column in converter_list:
        value = converter(value, column, connection)
    return value


def _prep(model, name, value, connection):
    return model._meta.get_field(name).get_db_prep_save(value, connection)


@cache
def _claim_sql(model, vendor):
    quote = connections[router.db_for_write(model)].ops.quote_name
    columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
    return (
        f"UPDATE {quote(model._meta.db_table)} "
        f"SET {_col(model, 'status')} = %s, {_col(model, 'started')} = %s, "
        f"{_col(model, 'worker')} = %s "
        f"WHERE {_col(model, 'id')} = %s AND {_col(model, 'status')} = %s "
        f"AND ({_col(model, 'run_after')} IS NULL OR {_col(model, 'run_after')} <= %s) "
        f"RETURNING {columns}"
    )


# PostgreSQL: commit this statement's transaction without waiting for the WAL
# to reach the disk (synchronous_commit off for it alone). A claim is the one
# write that may be lost in a crash of PostgreSQL itself: the task's outcome,
# committed durably, flushes the claim before it; a claim lost with the last
# fraction of a second before such a crash only makes that task run again.
# It saves a disk flush per claim, the largest part of its cost.
_NO_FLUSH_WAIT = "set_config('synchronous_commit', 'off', true) IS NOT NULL AND "


@cache
def _claim_batch_sql(model, vendor, queue_count):
    quote = connections[router.db_for_write(model)].ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in model._meta.concrete_fields)
    id_, priority, submitted = _col(model, "id"), _col(model, "priority"), _col(model, "submitted")
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    # One ordered, limited range per queue, then the best `limit` of them.
    per_queue = (
        f"SELECT * FROM (SELECT {id_}, {priority}, {submitted} FROM {table} "
        f"WHERE {_col(model, 'status')} = %s AND {_col(model, 'run_after')} IS NULL "
        f"AND {_col(model, 'queue')} = %s "
        f"ORDER BY {priority} DESC, {submitted} LIMIT %s{lock}) AS q{{n}}"
    )
    candidates = " UNION ALL ".join(per_queue.format(n=n) for n in range(queue_count))
    return (
        f"UPDATE {table} SET {_col(model, 'status')} = %s, {_col(model, 'started')} = %s, "
        f"{_col(model, 'worker')} = %s "
        f"WHERE {_NO_FLUSH_WAIT if vendor == 'postgresql' else ''}"
        f"{id_} IN (SELECT {id_} FROM ({candidates}) AS candidates "
        f"ORDER BY {priority} DESC, {submitted} LIMIT %s) AND {_col(model, 'status')} = %s "
        f"RETURNING {columns}"
    )


@cache
def _lock_running_sql(model, vendor, count):
    quote = connections[router.db_for_write(model)].ops.quote_name
    table = quote(model._meta.db_table)
    id_, worker = _col(model, "id"), _col(model, "worker")
    where = (
        f"WHERE {id_} IN ({', '.join(['%s'] * count)}) "
        f"AND {_col(model, 'status')} = %s AND {worker} = %s"
    )
    if vendor == "postgresql":
        return f"SELECT {id_}, {_col(model, 'retries')} FROM {table} {where} FOR UPDATE"
    return (
        f"UPDATE {table} SET {worker} = {worker} {where} RETURNING {id_}, {_col(model, 'retries')}"
    )


@cache
def _finish_many_sql(model, count):
    """PostgreSQL: one UPDATE ... FROM (VALUES ...) for `count` rows."""
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    types = [
        model._meta.get_field(name).db_type(connection)
        for name in ("id", "retries", "result", "result_expiry")
    ]
    row = "(" + ", ".join(f"%s::{db_type}" for db_type in types) + ")"
    id_, previous, status = _col(model, "id"), _col(model, "previous"), _col(model, "status")
    return (
        f"UPDATE {table} SET {status} = %s, {_col(model, 'finished')} = %s, "
        f"{_col(model, 'result')} = v.result, {_col(model, 'result_expiry')} = v.expiry, "
        f"{_col(model, 'error')} = '', {_col(model, 'traceback')} = '' "
        f"FROM (VALUES {', '.join([row] * count)}) AS v(id, retries, result, expiry) "
        f"WHERE {table}.{id_} = v.id AND {table}.{status} = %s "
        f"AND {table}.{_col(model, 'retries')} = v.retries "
        f"RETURNING {table}.{id_}, (SELECT COUNT(*) FROM {table} follower "
        f"WHERE follower.{previous} = {table}.{id_} AND follower.{status} = %s)"
    )


@cache
def _insert_sql(model, db):
    quote = connections[db].ops.quote_name
    fields = model._meta.concrete_fields
    return (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )


@cache
def _move_sql(model, names, vendor, fenced):
    quote = connections[router.db_for_write(model)].ops.quote_name
    table = quote(model._meta.db_table)
    assignments = ", ".join(f"{_col(model, name)} = %s" for name in names)
    attempt = f"AND {table}.{_col(model, 'retries')} = %s " if fenced else ""
    return (
        f"UPDATE {table} SET {assignments} "
        f"WHERE {_col(model, 'id')} = %s AND {_col(model, 'status')} = %s {attempt}"
        f"RETURNING (SELECT COUNT(*) FROM {table} follower "
        f"WHERE follower.{_col(model, 'previous')} = {table}.{_col(model, 'id')} "
        f"AND follower.{_col(model, 'status')} = %s)"
    )


def _col(model, name):
    quote = connections[router.db_for_write(model)].ops.quote_name
    return quote(model._meta.get_field(name).column)
