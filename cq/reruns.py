"""`Task.retry()`: run a finished task's call again, as a new task linked to it.

The old row stays as it ended (its error, its logs, its attempts): the new
one is the same call (function, arguments, queue, priority, the call's own
time limit, the Django task backend that made it) with `retry_of` pointing
back, so the admin shows both and a retry can itself be retried. Errorbacks
are not carried over: each is signed for the task it was added to
(cq.errorbacks), and the retry is another task.
"""

from .enqueue import delay
from .exceptions import TaskNotRetryable


def rerun(task):
    """A new QUEUED task with `task`'s call; `task` must have ended in
    Failure, Incomplete or Lost (Success and Revoked are not re-run by mistake)."""
    if task.status not in task.STATUS_ERROR:
        raise TaskNotRetryable(
            f"task {task.pk} ({task.func_name}) is {task.get_status_display()}: only a "
            "failed, incomplete or lost task can be retried"
        )
    # A subtask re-runs on its own: the parent it belonged to has ended.
    return delay(
        task.func_name,
        task.args,
        task.kwargs,
        queue=task.queue,
        priority=task.priority,
        result_ttl=task.result_ttl,
        time_limit=task.time_limit,
        backend=task.backend,
        retry_of=task,
    )
