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

import asyncio

from asgiref.sync import async_to_sync, iscoroutinefunction

from . import cancelling
from .exceptions import InvalidTaskOption, TaskCancelled


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


def call(fn, task_id, *args, **kwargs):
    """Run the coroutine function `fn` to completion from this (sync) thread."""
    return async_to_sync(_cancellable)(fn, task_id, args, kwargs)


async def _cancellable(fn, task_id, args, kwargs):
    """Run `fn`; a revoke of its task (cq.cancelling) cancels it, so that the
    coroutine sees asyncio.CancelledError at its current await. cq records
    TaskCancelled instead: CancelledError is a BaseException, which must not
    escape a slot thread (the row is REVOKED; that record is discarded)."""
    work = asyncio.ensure_future(fn(*args, **kwargs))
    loop = asyncio.get_running_loop()

    def cancel():
        try:
            loop.call_soon_threadsafe(work.cancel)
        except RuntimeError:  # the loop closed: the task ended meanwhile
            pass

    with cancelling.watching(task_id, cancel):
        try:
            return await work
        except asyncio.CancelledError:
            if not cancelling.is_cancelled(task_id):
                raise
            raise TaskCancelled(f"task {task_id} was revoked") from None
