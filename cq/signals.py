"""Signals a task sends as it moves through its life (cq.transitions sends them).

Each is sent with `sender` the Task model and `task_id` (a UUID), and
`task_finished` and `task_retried` also with `status` (the status letter it
moved to, e.g. "S").
`task_started` is sent by the worker right after its claim committed;
`task_enqueued` and `task_finished` once the transaction that queued or
finished the task has committed. They are sent robustly: a receiver that
raises is logged and never changes the task's outcome.
"""

from django.dispatch import Signal

# A task entered the queue: `.delay()`, `delay_many()`, or `submit()` of a PENDING task.
task_enqueued = Signal()
# A worker claimed the task and is about to run it.
task_started = Signal()
# Its function returned; it waits for its subtasks (WAITING).
task_waiting = Signal()
# An attempt failed (or its worker died) and it will run again (QUEUED or RETRY).
task_retried = Signal()
# The task reached a final status (Success, Failure, Incomplete, Lost, Revoked).
task_finished = Signal()
