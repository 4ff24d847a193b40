import pytest
from cq.models import Task
from cq.consumers import run_task
from tests.app import tasks


@pytest.mark.django_db(transaction=True)
def test_smoke_inline_run():
    t = tasks.add.delay(2, 3)
    assert t.status == Task.STATUS_QUEUED
    run_task(t.pk)
    t.refresh_from_db()
    assert (t.status, t.result) == (Task.STATUS_SUCCESS, 5)


def test_smoke_worker(start_worker):
    w = start_worker()
    t = tasks.spawn.delay(3)
    t.wait(15)
    print(w.output())
    assert t.status == Task.STATUS_SUCCESS, (t.status, t.error)
