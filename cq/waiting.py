"""Waiting for a task to finish without hammering the database."""

import time

# First pause between checks, and the longest one: the pause doubles while the
# task is still active, so a quick task is seen quickly and a slow one costs a
# few queries per second at most.
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.25


def wait_for(task, timeout=None):
    """Return once `task` is done (True) or `timeout` seconds have passed (False)."""
    from .models import Task

    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_PAUSE
    while True:
        status = Task.objects.filter(pk=task.pk).values_list("status", flat=True).first()
        if status is None or status in Task.STATUS_DONE:
            return True
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pause = min(pause, remaining)
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE)
