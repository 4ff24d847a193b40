"""Running tasks inline, in this thread, through the worker's own execution path.

Under CQ_SERIAL, `.delay()` stores the row as always and runs it at once; a
direct call `fn(...)` does the same whatever CQ_SERIAL says, returns the
result (or raises the task's exception) and deletes the rows it wrote. Only
the transport changes: a doorbell rung while running inline (see
`cq.doorbell.inline`) does not go to Redis but onto this thread's queue of
tasks to run. So subtasks, chains, retries, errorbacks and logs behave as with
workers, because they are the same code: a subtask runs after its parent's
function returned, a chained task after the task before it, a retry at once
(nobody but the caller would wait out its backoff).
"""

import threading
from collections import deque

from . import doorbell
from .enqueue import delay
from .execution import claim, run_claimed

_local = threading.local()

# The `worker` of a row run inline. No heartbeat stands for it, and workers'
# sweepers leave it alone (cq.recovery): the caller's thread runs it, however long.
INLINE = "inline"


def run(task_ids) -> None:
    """Run these tasks now, in this thread, and then whatever they queue, in order.

    Called while a task runs here (it queued a subtask, a chained task or a
    retry), it only adds to the queue: the running task finishes first."""
    queue = getattr(_local, "queue", None)
    if queue is not None:
        queue.extend(task_ids)
        return
    _local.queue = queue = deque(task_ids)
    try:
        while queue:
            task = claim(queue.popleft(), worker=INLINE)
            raised = None if task is None else run_claimed(task)
            direct_calls = getattr(_local, "raised", None)
            if raised is not None and direct_calls is not None:
                direct_calls[task.pk] = raised
    finally:
        _local.queue = None


def call(task_function, args, kwargs):
    """A direct call `fn(*args, **kwargs)`: run the task inline and return its
    result; its exception, if it raised, is raised here. Its rows are deleted."""
    # A direct call made by a task that runs inline runs its own tree to the
    # end, not after the calling task: it gets a queue of its own.
    outer = getattr(_local, "raised", None), getattr(_local, "queue", None)
    _local.raised, _local.queue = {}, None
    try:
        with doorbell.direct_call():
            # A direct call runs now, even while a unique task with its key is queued.
            task = delay(task_function, args, kwargs, unique=False)
        raised = _local.raised.get(task.pk)
    finally:
        _local.raised, _local.queue = outer
    # The subtasks and chained tasks of the tree go with it (`root` cascades).
    type(task).objects.filter(pk=task.pk).delete()
    if task.status == task.STATUS_FAILURE and raised is not None:
        raise raised
    return task.result


doorbell.use_inline_runner(run)
