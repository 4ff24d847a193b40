"""Unique tasks: at most one active task per key, decided by the database.

`@task(unique=True)` keys a call by the task's name and its arguments;
`unique_key="user-{user_id}"` (a template of the arguments, by parameter
name) or `unique_key=callable` (called with the arguments) gives the key
instead. The key is stored on the row, and a partial unique index on it
covers only the active statuses (cq_task_unique_key, in cq.models): so two
callers that insert the same key at the same moment, in any processes, race
in the database, and the one that loses gets the winner's row (or
AlreadyQueued with `unique="raise"`). A row that leaves the active statuses
leaves the index with it: once a task finishes, its key is free again,
without a second write.

The insert runs in a savepoint, so that losing the race does not abort the
caller's transaction, on PostgreSQL as on SQLite.
"""

import hashlib
import inspect
import json
import logging

from django.db import IntegrityError, router, transaction

from . import schedules, storable, transitions
from .exceptions import AlreadyQueued, InvalidTaskOption

logger = logging.getLogger(__name__)

# What `unique=` takes: the existing task is returned, or AlreadyQueued raised.
RETURN, RAISE = "return", "raise"
# The most a key may hold (Task.unique_key); a longer one is stored as its hash.
MAX_KEY = 255
# Tries of the insert, when the row that held the key finished between our
# failed insert and our read of it.
TRIES = 5


def check_mode(unique, unique_key):
    """The mode of `@task(unique=..., unique_key=...)`: None, RETURN or RAISE.
    A `unique_key` alone makes the task unique."""
    if unique_key is not None and not (isinstance(unique_key, str) or callable(unique_key)):
        raise InvalidTaskOption(
            f"unique_key must be a string template or a callable, got {unique_key!r}"
        )
    if unique in (True, RETURN):
        return RETURN
    if unique == RAISE:
        return RAISE
    if unique in (False, None):
        return RETURN if unique_key is not None and unique is None else None
    raise InvalidTaskOption(f'unique must be True, False or "raise", got {unique!r}')


def key_for(task_function, args, kwargs, mode):
    """The key stored on the row of this call, or None when it is not unique.
    Raises InvalidTaskOption when a template or a callable cannot make it."""
    if mode is None:
        return None
    spec = task_function.unique_key
    if spec is None:
        part = _digest(_text(_call(task_function, args, kwargs)))
    elif isinstance(spec, str):
        part = _render(task_function, spec, args, kwargs)
    else:
        try:
            part = spec(*args, **kwargs)
        except Exception as exc:
            raise InvalidTaskOption(
                f"unique_key of {task_function.name} failed on these arguments: {exc!r}"
            ) from exc
        if not isinstance(part, str):
            raise InvalidTaskOption(
                f"unique_key of {task_function.name} returned {part!r}, not a string"
            )
    key = f"{task_function.name}:{part}"
    return key if len(key) <= MAX_KEY else f"sha256:{_digest(key)}"


def insert(task, mode):
    """Insert `task` unless an active task holds its key; returns (the task
    inserted or the one that holds the key, whether it was inserted)."""
    model = type(task)
    for _ in range(TRIES):
        try:
            with transaction.atomic(using=router.db_for_write(model)):
                transitions.insert(task)
            return task, True
        except IntegrityError as exc:
            if "unique_key" not in str(exc):
                raise
        holder = model.objects.active().filter(unique_key=task.unique_key).first()
        if holder is not None:
            logger.debug("unique task already active key=%s id=%s", task.unique_key, holder.pk)
            if mode == RAISE:
                raise AlreadyQueued(
                    f"task {holder.pk} ({holder.func_name}) with unique key "
                    f"{task.unique_key!r} is already active ({holder.get_status_display()})",
                    task=holder,
                )
            return holder, False
    raise IntegrityError(f"unique key {task.unique_key!r} is busy; tried {TRIES} times")


def _call(task_function, args, kwargs):
    """The call as `[positional arguments, keyword arguments]`, bound to the
    function's parameters with their defaults: `f("k")`, `f(key="k")` and
    `f("k", flag=False)` are one call, so they get one key. Every parameter
    that can be positional is, as `BoundArguments.args` puts it; keyword-only
    ones and `**kwargs` stay keywords. A call made positionally with every
    argument given so keeps the key it had before cq bound calls."""
    bound = _bind(task_function, args, kwargs)
    if bound is None:  # no signature to bind to (a builtin): the call as given
        return [args, kwargs]
    return [list(bound.args[1:]), bound.kwargs]  # not cqt


def _text(call):
    """The call as the JSON text its key hashes: checked (keys that collide as
    JSON are refused, keys of mixed types are not a TypeError), then written as
    keys were written before calls were bound (ASCII, keys sorted), so that a
    task queued before an upgrade still holds the key of the same call after it."""
    return json.dumps(json.loads(storable.dumps(call, "arguments")), sort_keys=True)


def _bind(task_function, args, kwargs):
    """The call bound to the function's parameters after `cqt`, defaults
    applied; InvalidTaskOption, at the call, if the function cannot take it."""
    try:
        signature = inspect.signature(task_function.fn)
    except (TypeError, ValueError):
        return None
    problem = schedules.binding_problem(signature, args, kwargs)
    if problem is not None:
        raise InvalidTaskOption(
            f"{task_function.name}{signature} cannot take args={list(args)!r} "
            f"kwargs={dict(kwargs)!r}: {problem[1]}"
        )
    bound = signature.bind(None, *args, **kwargs)
    bound.apply_defaults()
    return bound


def _render(task_function, template, args, kwargs):
    """`template.format(**arguments)`, the arguments named as in the function."""
    bound = _bind(task_function, args, kwargs)
    arguments = {} if bound is None else dict(list(bound.arguments.items())[1:])  # not cqt
    try:
        return template.format(**arguments)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise InvalidTaskOption(
            f"unique_key {template!r} of {task_function.name} cannot be filled from "
            f"{arguments!r}: {exc!r}"
        ) from None


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()
