"""Worker recycling: --max-tasks and --max-memory (cq.recycling).

With either option `runworker` stays a parent that keeps its process id and
runs the worker as a child, a new one each time the last recycled."""

import os
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from cq.models import Task
from cq.recycling import EXIT_RECYCLE
from tests.app import tasks
from tests.helpers import alive, errors, statuses, unfinished, wait_until


def pid_of(worker_name):
    """The process id in a worker's name (host:pid:random)."""
    return int(worker_name.split(":")[1])


def running_worker_pid(ids):
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.STATUS_RUNNING).exists(),
        30,
        message="a task running",
    )
    name = Task.objects.filter(pk__in=ids, status=Task.STATUS_RUNNING).first().worker
    return pid_of(name)


@pytest.mark.slow
def test_a_worker_with_max_tasks_is_replaced_by_new_processes(start_worker):
    worker = start_worker("--max-tasks", "50", "--concurrency", "2")
    ids = [t.pk for t in tasks.add.delay_many([(n, n) for n in range(200)])]
    wait_until(lambda: unfinished(ids) == 0, 120, message="all 200 tasks done")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 200}, errors(ids)
    by_worker = Counter(Task.objects.filter(pk__in=ids).values_list("worker", flat=True))
    # Four generations at least, each after at most 50 tasks, each its own
    # process: the worker's process id changed three times or more.
    assert max(by_worker.values()) <= 50, by_worker
    pids = {pid_of(name) for name in by_worker}
    assert len(pids) >= 4, by_worker
    # The parent, which systemd or Docker watch, is none of them, and stayed.
    assert worker.pid not in pids
    assert worker.process.poll() is None
    assert not Task.objects.filter(status=Task.STATUS_RUNNING).exists()
    # Each generation printed its banner.
    assert worker.output().count("  queues:") >= len(by_worker), worker.output()
    print(f"replacements: {replacement_gaps(ids)}")


def replacement_gaps(ids):
    """Seconds from a generation's last finished task to the next one's first claim."""
    rows = Task.objects.filter(pk__in=ids).values_list("worker", "started", "finished")
    spans = {}
    for name, started, finished in rows:
        first, last = spans.get(name, (started, finished))
        spans[name] = (min(first, started), max(last, finished))
    ordered = sorted(spans.values())
    return [
        round((following[0] - previous[1]).total_seconds(), 3)
        for previous, following in zip(ordered, ordered[1:], strict=False)
    ]


def test_a_worker_past_max_memory_is_replaced(start_worker):
    # 1 MB: every worker is above it, so each generation runs its first claim only.
    worker = start_worker("--max-memory", "1")
    ids = [t.pk for t in tasks.add.delay_many([(n, n) for n in range(3)])]
    wait_until(lambda: unfinished(ids) == 0, 60, message="all 3 tasks done")
    assert statuses(ids) == {Task.STATUS_SUCCESS: 3}, errors(ids)
    pids = set(Task.objects.filter(pk__in=ids).values_list("worker", flat=True))
    assert len({pid_of(name) for name in pids}) >= 2, pids
    assert worker.process.poll() is None


def test_sigterm_to_the_parent_stops_its_worker_gracefully(start_worker):
    worker = start_worker("--max-tasks", "50", "--concurrency", "2")
    started = f"started-{uuid.uuid4().hex}"
    ids = [t.pk for t in tasks.sleep.delay_many([(0.5, started) for _ in range(10)])]
    child = running_worker_pid(ids)
    assert child != worker.pid
    # A body running, not only a row RUNNING: a task claimed but not yet
    # started is handed back at SIGTERM (QUEUED again), by design, and then
    # none might finish (seen once in nine runs of this file).
    wait_until(lambda: cache.get(started), 20, message="a task's body running")
    worker.signal(signal.SIGTERM)
    # Its running tasks finish, the claimed ones go back: exit 0, no new child.
    assert worker.wait(20) == 0, worker.output()
    assert not alive(child)
    assert not Task.objects.filter(pk__in=ids, status=Task.STATUS_RUNNING).exists()
    done = statuses(ids)
    assert set(done) <= {Task.STATUS_SUCCESS, Task.STATUS_QUEUED}, done
    assert done.get(Task.STATUS_SUCCESS, 0) >= 1, done
    ran = Task.objects.filter(pk__in=ids, status=Task.STATUS_SUCCESS)
    assert {pid_of(name) for name in ran.values_list("worker", flat=True)} == {child}


def test_a_killed_parent_takes_its_worker_along(start_worker):
    worker = start_worker("--max-tasks", "50")
    ids = [tasks.sleep_untimed.delay().pk]
    child = running_worker_pid(ids)
    worker.kill()
    wait_until(lambda: not alive(child), 10, message="the worker gone with its parent")


def test_a_worker_exits_with_the_recycling_status_the_parent_sees(start_worker):
    # Without --max-tasks or --max-memory there is no parent: a worker that must
    # be replaced (a terminated thread task) exits, for its supervisor.
    worker = start_worker()
    task = tasks.sleep_untimed.delay()
    pid = running_worker_pid([task.pk])
    assert pid == worker.pid
    # A terminate published before the worker's listener subscribed is caught
    # up from the rows as a plain cancel: revoke once it listens. Its own
    # subscription, not any: counting the channel's subscribers let a leftover
    # one (of an earlier test's process) pass for it, and the terminate was
    # then published too early and became a cancel the sleeping task ignored.
    wait_until(lambda: subscribed(worker.pid), 20, message="the worker listens for cancels")
    task.revoke(terminate=True)
    assert worker.wait(20) == EXIT_RECYCLE, worker.output()
    assert Task.objects.get(pk=task.pk).status == Task.STATUS_REVOKED


def subscribed(pid):
    """Whether process `pid` holds a Redis connection subscribed to a channel:
    the local ports of its TCP sockets, matched with CLIENT LIST's `addr`."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        ports = {
            int(entry["addr"].rsplit(":", 1)[1])
            for entry in client.client_list()
            if int(entry.get("sub", 0)) > 0
        }
    finally:
        client.close()
    return bool(ports & local_ports(pid))


def local_ports(pid):
    """The local ports of process `pid`'s TCP sockets (from /proc: its socket
    inodes, looked up in its network namespace's table)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
