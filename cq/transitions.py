"""The hot-path state changes of a task row, as single SQL statements.

Every task pays for these, so they skip the ORM's query building (which cost
more than the database round trip itself: ~1 ms against ~0.1 ms) but keep its
value conversion: parameters go through each field's `get_db_prep_save`, rows
come back through `Model.objects.raw`, so JSON, UUIDs and datetimes behave as
everywhere else. PostgreSQL and SQLite (3.35+) both support `RETURNING`.
"""

from functools import lru_cache

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
    rows = list(model.objects.using(db).raw(sql, params))
    return rows[0] if rows else None


def move(model, task_id, expected, **fields):
    """Update `fields` of the row if its status is `expected`.

    Returns None if the row was not in that status; otherwise the number of
    PENDING tasks chained after it, found in the same statement, so that the
    common task, with no chain, needs no second query.
    """
    db = router.db_for_write(model)
    connection = connections[db]
    names = tuple(sorted(fields))
    sql = _move_sql(model, names, connection.vendor)
    params = [_prep(model, name, fields[name], connection) for name in names]
    params += [_prep(model, "id", task_id, connection), _prep(model, "status", expected, connection)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params + [_prep(model, "status", model.STATUS_PENDING, connection)])
        row = cursor.fetchone()
        return None if row is None else row[0]


def _prep(model, name, value, connection):
    return model._meta.get_field(name).get_db_prep_save(value, connection)


@lru_cache(maxsize=None)
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


@lru_cache(maxsize=None)
def _move_sql(model, names, vendor):
    quote = connections[router.db_for_write(model)].ops.quote_name
    table = quote(model._meta.db_table)
    assignments = ", ".join(f"{_col(model, name)} = %s" for name in names)
    return (
        f"UPDATE {table} SET {assignments} "
        f"WHERE {_col(model, 'id')} = %s AND {_col(model, 'status')} = %s "
        f"RETURNING (SELECT COUNT(*) FROM {table} follower "
        f"WHERE follower.{_col(model, 'previous')} = {table}.{_col(model, 'id')} "
        f"AND follower.{_col(model, 'status')} = %s)"
    )


def _col(model, name):
    quote = connections[router.db_for_write(model)].ops.quote_name
    return quote(model._meta.get_field(name).column)
