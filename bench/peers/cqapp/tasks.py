"""The harness's no-op task as a cq task; cq imports every app's `tasks` module."""

from taskbody import mark_done

from cq import task


@task("cqapp.noop")
def noop(cqt, x):
    return mark_done(x)
