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


def _fetch_instance(model, db, sql, params):
    connection = connections[db]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    fields, converters = _row_reading(model, db)
    values = [
        _convert(value, converter_list, connection)
        for value, converter_list in zip(row, converters, strict=True)
    ]
    return model.from_db(db, fields, values)


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
