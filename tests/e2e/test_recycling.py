"""Worker recycling: --max-tasks and --max-memory (cq.recycling)."""

from collections import Counter

import pytest

from cq.models import Task
from tests.app import tasks
from tests.helpers import errors, statuses, unfinished, wait_until


@pytest.mark.slow
def test_a_worker_with_max_tasks_replaces_itself_and_runs_everything(start_worker):
    worker = start_worker("--max-tasks", "50", "--concurrency", "2")
    ids = [t.pk for t in tasks.add.delay_many([(n, n) for n in range(200)])]
    wait_until(lambda: unfinished(ids) == 0, 120, message="all 200 tasks done")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 200}, errors(ids)
    by_worker = Counter(Task.objects.filter(pk__in=ids).values_list("worker", flat=True))
    # Four generations at least: the worker replaced itself three times or more,
    # each after at most 50 tasks; execv kept its process id.
    assert len(by_worker) >= 4, by_worker
    assert max(by_worker.values()) <= 50, by_worker
    assert {name.split(":")[1] for name in by_worker} == {str(worker.pid)}
    assert not Task.objects.filter(status=Task.STATUS_RUNNING).exists()
    # Each generation printed its banner.
    assert worker.output().count("  queues:") >= len(by_worker), worker.output()
    assert worker.process.poll() is None


def test_a_worker_past_max_memory_replaces_itself(start_worker):
    # 1 MB: every worker is above it, so each generation runs its first claim only.
    worker = start_worker("--max-memory", "1")
    ids = [t.pk for t in tasks.add.delay_many([(n, n) for n in range(3)])]
    wait_until(lambda: unfinished(ids) == 0, 60, message="all 3 tasks done")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 3}, errors(ids)
    assert worker.output().count("  queues:") >= 2, worker.output()
    assert worker.process.poll() is None
