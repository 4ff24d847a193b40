"""Task logs written by subtasks on two real worker processes
(tests/integration/test_logs.py holds the rest)."""

import pytest

from cq.models import Task, WorkerHeartbeat
from tests.app import tasks
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def messages(lines):
    return [line["message"] for line in lines]


@pytest.mark.slow
def test_concurrent_subtasks_on_two_workers_keep_every_line(start_worker):
    # The children on two queues, one per worker, so that both workers log
    # into the tree at once by construction: left to the doorbells, one
    # worker that popped them all could run the whole tree while the other
    # idled (seen in CI under load, even with 0.3 s children).
    start_worker("--concurrency", "2", "--queues", "default,a")
    start_worker("--concurrency", "2", "--queues", "b")
    wait_until(lambda: WorkerHeartbeat.objects.count() == 2, timeout=60, message="two workers")
    root = tasks.log_tree.delay(30, 0.05, ["a", "b"])
    wait_until(lambda: Task.objects.get(pk=root.pk).is_done, timeout=120, message="tree done")
    # The lines reach the row just after the outcome commits, in a transaction
    # of their own (docs/guarantees.md, "The outcome depends on nothing else").
    wait_until(lambda: Task.objects.get(pk=root.pk).logs, timeout=10, message="lines stored")
    root.refresh_from_db()
    assert root.status == Task.STATUS_SUCCESS
    assert sorted(messages(root.logs)) == sorted(
        ["parent starts"] + [f"child {n}" for n in range(30)]
    )
    assert len({line["origin"] for line in root.logs}) == 31
    workers = set(Task.objects.filter(root=root).values_list("worker", flat=True))
    assert len(workers) == 2, "both workers took part"
