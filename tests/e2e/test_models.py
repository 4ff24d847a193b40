"""Task rows and doorbells with a real worker process (tests/integration/test_models.py
holds the rest)."""

import pytest

from cq.models import Task
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import channel_depth, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_a_revoked_task_whose_doorbell_is_on_the_channel_never_runs(start_worker, redis_client):
    task = tasks.record_run.delay("must not run")
    assert channel_depth(redis_client) == 1
    task.revoke()
    start_worker()
    wait_until(lambda: channel_depth(redis_client) == 0, message="doorbell consumed")
    control = tasks.record_run.delay("runs")
    assert control.wait(30).status == Task.STATUS_SUCCESS
    assert Task.objects.get(pk=task.pk).status == Task.STATUS_REVOKED
    assert list(Note.objects.values_list("text", flat=True)) == ["runs"]
