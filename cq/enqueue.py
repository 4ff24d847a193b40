"""Creating tasks: `delay()` and `delay_many()`, with their checks, and ringing for them.

Arguments are checked here, at the call, so that a bad one raises in the
caller's code with nothing written. The Task model is looked up in Django's
app registry rather than imported, so that cq.models can use this module.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.apps import apps

from . import doorbell, options, registry, transitions, uniqueness
from .storable import check_json

if TYPE_CHECKING:
    from .decorators import TaskRef
    from .models import Task

_DELAY_FIELDS = {
    "parent",
    "previous",
    "root_id",
    "run_after",
    "countdown",
    "result_ttl",
    "force_chain",
    "repeating_task",
    "queue",
    "priority",
    "unique",
    "backend",  # Django's task API (cq.backends): the TASKS alias that enqueued it
    "time_limit",
    "retry_of",
}


def delay(
    fn_or_name: "TaskRef",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    submit: bool = True,
    **fields: Any,
) -> "Task":
    """Create a task for a registered function; QUEUED (or PENDING when
    `submit=False`) in the caller's transaction, rung after it commits."""
    task_function = registry.resolve(fn_or_name)
    mode = _unique_mode(task_function, fields)
    task = _build(task_function, args, kwargs, fields, mode)
    task.status = task.STATUS_QUEUED if submit else task.STATUS_PENDING
    if task.unique_key is None:
        transitions.insert(task)
    else:
        task, inserted = uniqueness.insert(task, mode)
        if not inserted:
            return task  # the active task with this key, already rung
    if submit and task.run_after is None:
        ring([task])
    return task


def delay_many(fn_or_name: "TaskRef", calls: Iterable[Any], **fields: Any) -> "list[Task]":
    """Queue many calls of one task with a single INSERT and pipelined doorbells."""
    task_function = registry.resolve(fn_or_name)
    mode = _unique_mode(task_function, fields)
    tasks = []
    for call in calls:
        args, kwargs = call if _is_args_kwargs_pair(call) else (call, None)
        tasks.append(_build(task_function, args, kwargs, dict(fields), mode))
    for task in tasks:
        task.status = task.STATUS_QUEUED
    if any(task.unique_key is not None for task in tasks):
        return _delay_many_unique(tasks, mode)
    transitions.insert_many(tasks)
    ring([t for t in tasks if t.run_after is None])
    return tasks


def _delay_many_unique(tasks, mode):
    # Each key races in the database on its own: one INSERT per task, each in
    # a savepoint, so one call that holds a key again gets the active task.
    results, inserted = [], []
    for task in tasks:
        result, is_new = uniqueness.insert(task, mode)
        results.append(result)
        if is_new and result.run_after is None:
            inserted.append(result)
    ring(inserted)
    return results


def ring(tasks):
    """Ring for `tasks` once the transaction commits; run inline (CQ_SERIAL,
    a direct call), they have run when this returns: show their outcome."""
    by_queue = {}
    for task in tasks:
        by_queue.setdefault(task.queue, []).append(task.pk)
    for queue, task_ids in by_queue.items():
        doorbell.ring_on_commit(task_ids, queue)
    if doorbell.inline():
        for task in tasks:
            task.refresh_from_db()


def _is_args_kwargs_pair(call):
    return (
        isinstance(call, (tuple, list))
        and len(call) == 2
        and isinstance(call[0], (tuple, list))
        and isinstance(call[1], dict)
    )


def _build(task_function, args, kwargs, fields, mode=None):
    unknown = set(fields) - _DELAY_FIELDS
    if unknown:
        raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
    if isinstance(args, (str, bytes, dict)) or not hasattr(args, "__iter__"):
        raise TypeError(f"args must be a list or tuple, got {args!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, got {kwargs!r}")
    args, kwargs = list(args), dict(kwargs or {})
    check_json(args, "arguments")
    check_json(kwargs, "keyword arguments")
    options.check_call(task_function, fields)
    parent = fields.get("parent")
    if parent is not None and "root_id" not in fields:
        fields["root_id"] = parent.top_id
    fields["unique_key"] = uniqueness.key_for(task_function, args, kwargs, mode)
    return _task_model()(func_name=task_function.name, args=args, kwargs=kwargs, **fields)


def _unique_mode(task_function, fields):
    """The task's `unique`, or this call's `unique=` (popped from `fields`).
    A subtask or a chained task belongs to its tree, which waits for it: it
    is never swapped for an active task of another tree."""
    mode = task_function.unique
    if "unique" in fields:
        mode = uniqueness.check_mode(fields.pop("unique"), task_function.unique_key)
    if fields.get("parent") is not None or fields.get("previous") is not None:
        return None
    return mode


def _task_model():
    return apps.get_model("cq", "Task")
