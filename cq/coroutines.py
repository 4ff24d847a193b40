"""`async def` tasks: how a coroutine task runs, on a worker and inline.

A coroutine task runs in the slot thread that claimed it, through the same
execution as any task (cq.execution): claim, statuses, retries, logs,
subtasks, chains. Only the call differs: the slot thread runs the coroutine
with asgiref's `async_to_sync`, on an event loop of its own, and waits for it.
So a worker runs as many coroutines at once as it has slots (`--concurrency`),
each awaiting its I/O while the others run, and the thread-sensitive calls
the coroutine makes (Django's async ORM, `sync_to_async`, `cqt.asubtask`)
run back in that slot thread, on its database connection, as in a Django
view: a task that awaits the database does not queue behind the others' in
one shared thread. CQ_SERIAL and direct calls take the same path in the
caller's thread.

An `async def` task is never atomic: its queries run outside the slot's
transaction, so `atomic=True` could not make them commit with its outcome.
`@task` refuses it at decoration (`check_atomic`).
"""

from asgiref.sync import async_to_sync, iscoroutinefunction

from .exceptions import InvalidTaskOption


def is_coroutine_function(fn) -> bool:
    return iscoroutinefunction(fn)


def check_atomic(fn, name: str, atomic: bool | None) -> bool:
    """Whether the task `fn` runs atomically: by default a plain function
    does and a coroutine function does not; `atomic=True` on a coroutine
    function raises InvalidTaskOption."""
    coroutine = is_coroutine_function(fn)
    if atomic is None:
        return not coroutine
    if coroutine and atomic:
        raise InvalidTaskOption(
            f"@task {name} is an async def task: it cannot be atomic=True, because its "
            "queries (the async ORM) run outside the transaction of its outcome; leave "
            "atomic out (async tasks are not atomic), and group writes that must commit "
            "together in a sync function under transaction.atomic(), awaited with "
            "sync_to_async"
        )
    return bool(atomic)


def call(fn, *args, **kwargs):
    """Run the coroutine function `fn` to completion from this (sync) thread."""
    return async_to_sync(fn)(*args, **kwargs)
