"""Many workers on several machines: 4 "machines" of 4 worker processes each,
simulated on this one (each machine's workers run in a UTS namespace with its
own host name, so their names say where they run), fed by several producer
processes. One test, in phases, because starting 16 Django processes is what
costs (about 0.6 s of CPU each):

1. a repeating task fires once per occurrence while all 16 workers tick;
2. 3 producers queue 3,000 tasks; every task runs exactly once, spread over
   all the machines;
3. meanwhile one machine dies (its 4 workers frozen, then killed with
   SIGKILL): the sweepers of the others recover its tasks, as
   docs/guarantees.md promises, and no finished task runs again;
and all along, the test database's PostgreSQL connections stay within
`concurrency + 3` per worker process (see PER_WORKER).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from cq.models import RepeatingTask, Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import ROOT, WorkerProcess, process_env, statuses, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("CQ_TEST_DB", "postgres") != "postgres",
        reason="PostgreSQL only: SQLite serialises every writer on one file, so 16 worker "
        "processes would measure its lock, and the connection bound is PostgreSQL's",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="simulating machines needs root (unshare --uts)"),
]

MACHINES, PER_MACHINE, CONCURRENCY = 4, 4, 2
PRODUCERS, PER_PRODUCER = 3, 1000
# A worker process's connections: one per slot thread, the housekeeping
# thread's and the heartbeat thread's, which CONN_MAX_AGE keeps open, and the
# live outbox thread's (cq.live.outbox), which reads the rows of the first
# events a process sends and closes once idle. No task here has a time limit
# (a child process, with a connection of its own, per running one).
PER_WORKER = CONCURRENCY + 3
# Any other process of the test: its main thread's and its outbox thread's.
PER_OTHER = 2
ENV = {
    # A dead worker is noticed after 5 s without a heartbeat: short, yet far
    # above what 16 workers and 3 producers sharing 2 cores delay a beat.
    "CQ_TEST_WORKER_TIMEOUT": "5",
    "CQ_TEST_HEARTBEAT_INTERVAL": "0.5",
    "CQ_TEST_REQUEUE_AFTER": "1",
    # The production default is 1 s; 16 workers at the suite's 0.2 s would
    # spend the CPU on housekeeping queries.
    "CQ_TEST_HOUSEKEEPING_INTERVAL": "0.5",
}

# Run by each producer process: half its tasks with `delay_many`, a backlog at
# once, then half one `.delay()` at a time, as views do; both functions
# alternate. Each task's argument is unique, and each run writes it into a
# Note: notes count runs.
PRODUCER = """
import sys

import django

django.setup()

from cq.doorbell import doorbell
from tests.app import tasks

name, count = sys.argv[1], int(sys.argv[2])
functions = [tasks.record_run, tasks.record_run_at_least_once]
half = count // 2
for first in range(0, half, 50):
    batch = [(f"{name} {n}",) for n in range(first, min(first + 50, half))]
    functions[first // 50 % 2].delay_many(batch)
for n in range(half, count):
    functions[n % 2].delay(f"{name} {n}")
doorbell.flush(10)
"""


class Machines:
    """Worker processes grouped by the host name they run under."""

    def __init__(self):
        self.workers = {}  # host name -> [WorkerProcess]

    def start(self, host, count):
        self.workers[host] = [
            WorkerProcess("--concurrency", str(CONCURRENCY), env=ENV, host=host)
            for _ in range(count)
        ]

    def all(self):
        return [worker for workers in self.workers.values() for worker in workers]

    def signal(self, host, signum):
        for worker in self.workers[host]:
            worker.signal(signum)

    def kill(self, host):
        """The machine dies: every worker on it at once, with no chance to clean up."""
        self.signal(host, signal.SIGKILL)
        for worker in self.workers[host]:
            worker.wait(10)

    def stop(self):
        # SIGTERM to all first: 16 workers stopped one by one would take 16 times as long.
        for worker in self.all():
            if worker.process.poll() is None:
                worker.signal(signal.SIGTERM)
        for worker in self.all():
            worker.stop()

    def logs(self, limit=1500):
        return {worker.pid: worker.output()[-limit:] for worker in self.all()}


@pytest.fixture
def machines(transactional_db):
    machines = Machines()
    yield machines
    machines.stop()


class ConnectionSampler(threading.Thread):
    """Samples, every 0.1 s, the test database's connections in pg_stat_activity
    (from a connection to another database, which does not count) and each
    worker process's TCP connections to PostgreSQL (from /proc)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        settings = connection.settings_dict
        self.database, self.port = settings["NAME"], int(settings["PORT"])
        self.conninfo = {
            "host": settings["HOST"],
            "port": self.port,
            "user": settings["USER"],
            "dbname": "postgres",
        }
        self.pids = pids
        self.totals = []
        # At the highest total: (total, the workers' share, this process's share).
        self.peak = (0, 0, 0)
        self.per_worker = Counter()  # pid -> the most connections seen at once
        self.done = threading.Event()

    def run(self):
        with psycopg.connect(**self.conninfo, autocommit=True) as pg:
            while not self.done.is_set():
                (total,) = pg.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.database]
                ).fetchone()
                self.totals.append(total)
                sockets = connected_sockets(self.port)
                counts = {pid: len(process_sockets(pid) & sockets) for pid in self.pids}
                for pid, count in counts.items():
                    self.per_worker[pid] = max(self.per_worker[pid], count)
                if total > self.peak[0]:
                    mine = len(process_sockets(os.getpid()) & sockets)
                    self.peak = (total, sum(counts.values()), mine)
                self.done.wait(0.1)

    def stop(self):
        self.done.set()
        self.join(10)


def connected_sockets(port):
    """Inodes of the established TCP connections to `port` on this host."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote, state, inode = fields[2], fields[3], fields[9]
                if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def process_sockets(pid):
    """Inodes of the sockets process `pid` holds open."""
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:  # a dead process holds none
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def host_of(worker_name):
    return worker_name.split(":", 1)[0]


def test_sixteen_workers_on_four_machines_one_of_which_dies(machines):
    began = time.monotonic()
    hosts = [f"machine-{n}" for n in range(MACHINES)]
    for host in hosts:
        machines.start(host, PER_MACHINE)
    workers = len(machines.all())
    sampler = ConnectionSampler([worker.pid for worker in machines.all()])
    sampler.start()
    try:
        wait_until(
            lambda: WorkerHeartbeat.objects.count() == workers,
            60,
            interval=0.2,
            message=f"{workers} worker heartbeats",
        )
        names = list(WorkerHeartbeat.objects.values_list("name", flat=True))
        assert Counter(host_of(name) for name in names) == dict.fromkeys(hosts, PER_MACHINE)
        started = time.monotonic()
        print(f"{workers} workers up in {started - began:.1f}s")

        occurrences = fire_repeating_task(4)
        print(f"4 occurrences in {time.monotonic() - started:.1f}s")

        run_killing_a_machine(machines, "machine-0")
    finally:
        sampler.stop()

    peak, of_workers, of_this = sampler.peak
    print(
        f"connections to the test database: peak {peak} ({of_workers} of the workers, "
        f"{of_this} of this process) over {len(sampler.totals)} samples; most held by one "
        f"worker process at once -> how many workers: "
        f"{dict(sorted(Counter(sampler.per_worker.values()).items()))}; "
        f"whole test {time.monotonic() - began:.1f}s"
    )
    assert peak <= workers * PER_WORKER + (PRODUCERS + 1) * PER_OTHER
    assert max(sampler.per_worker.values()) <= PER_WORKER
    assert occurrences == 4


def fire_repeating_task(count):
    """Make `count` occurrences of a repeating task come due, one after the
    other, while every worker's scheduler ticks; returns how many ran.

    The shortest cron period is a minute, and a few minute boundaries would
    take minutes: the test moves `next_run` itself. An occurrence is nothing
    else to the workers: each tick reads the due row and tries to move its
    `next_run` on from the value it read, and one worker wins. The crontab
    fires on New Year's Day only, so no real occurrence comes in between."""
    repeating = RepeatingTask.schedule("0 0 1 1 *", tasks.record_run, ("cron",))
    far = repeating.next_run
    rows = RepeatingTask.objects.filter(pk=repeating.pk)
    runs = Task.objects.filter(repeating_task=repeating)
    dues = []
    for n in range(count):
        due = timezone.now() + timedelta(seconds=0.5)
        dues.append(due)
        rows.update(next_run=due)
        wait_until(lambda due=due: rows.get().next_run != due, 30, message=f"occurrence {n} taken")
        # Until its run is over, the next occurrence would be coalesced (skipped).
        wait_until(
            lambda n=n: runs.filter(status=Task.STATUS_SUCCESS).count() == n + 1,
            30,
            message=f"run {n} done",
        )
        assert rows.get().next_run == far
    time.sleep(1)  # two more ticks of every worker: a late one would launch a run now
    launched = list(runs.order_by("submitted"))
    assert len(launched) == count, [(t.submitted, t.worker) for t in launched]
    for due, run in zip(dues, launched, strict=True):
        assert run.submitted >= due
    assert Note.objects.filter(text="cron").count() == count
    print("cron runs by", sorted(host_of(run.worker) for run in launched))
    return len(launched)


def run_killing_a_machine(machines, victim):
    functions = [tasks.record_run.name, tasks.record_run_at_least_once.name]
    rows = Task.objects.filter(func_name__in=functions).exclude(args=["cron"])
    total = PRODUCERS * PER_PRODUCER
    began = time.monotonic()
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, f"p{n}", str(PER_PRODUCER)],
            cwd=ROOT,
            env=process_env(),
        )
        for n in range(PRODUCERS)
    ]
    try:
        on_victim = rows.filter(worker__startswith=f"{victim}:")
        wait_until(
            lambda: rows.filter(status__in=Task.STATUS_DONE).count() >= total // 5,
            90,
            interval=0.05,
            message="the run under way",
        )
        died_at = wait_until(
            lambda: freeze_with_tasks_running(machines, victim, on_victim),
            30,
            interval=0.05,
            message=f"{victim} frozen with tasks running",
        )
        machines.kill(victim)
        print(f"{victim} died after {died_at - began:.1f}s")
        # Dead workers change nothing more: what they left RUNNING is theirs.
        orphans = list(on_victim.filter(status=Task.STATUS_RUNNING).values_list("pk", flat=True))
        finished_there = set(
            on_victim.filter(status=Task.STATUS_SUCCESS).values_list("pk", flat=True)
        )
        wait_until(
            lambda: not Task.objects.filter(pk__in=orphans, status=Task.STATUS_RUNNING).exists(),
            60,
            interval=0.1,
            message="the dead machine's tasks recovered",
        )
        recovered = time.monotonic() - died_at
        produced = [producer.wait(90) for producer in producers]
        print(f"producers done after {time.monotonic() - began:.1f}s")
        assert produced == [0] * PRODUCERS
        wait_until(
            lambda: (
                rows.count() == total and not rows.exclude(status__in=Task.STATUS_DONE).exists()
            ),
            120,
            interval=0.2,
            message=f"{total} tasks done",
        )
    finally:
        for producer in producers:
            if producer.poll() is None:
                producer.kill()
                producer.wait(10)
    drained = time.monotonic() - began
    print(
        f"{total} tasks from {PRODUCERS} producers done in {drained:.1f}s; {victim} killed with "
        f"{len(orphans)} tasks claimed, recovered {recovered:.1f}s after it died; {statuses(rows)}"
    )
    assert orphans, "the machine died with nothing running: nothing was recovered"
    check_exactly_once(rows, total, victim, finished_there)


def freeze_with_tasks_running(machines, host, on_host):
    """Stop (SIGSTOP) the machine's workers; if they hold RUNNING tasks, return
    when (monotonic), so that the kill that follows leaves some: quick tasks
    come and go between a look at the table and a kill. Else let them go on,
    for another try. From the freeze on, the machine is dead to the others:
    no heartbeat, no commit."""
    machines.signal(host, signal.SIGSTOP)
    frozen_at = time.monotonic()
    time.sleep(0.2)  # commits already on their way to the server land
    if on_host.filter(status=Task.STATUS_RUNNING).exists():
        return frozen_at
    machines.signal(host, signal.SIGCONT)
    return False


def check_exactly_once(rows, total, victim, finished_there):
    """What docs/guarantees.md promises when a worker dies mid-run: an atomic
    task that may run again (at_least_once) is requeued and its writes persist
    once; one that may not is marked Lost and its writes are rolled back; a
    task that had finished keeps its outcome and does not run again."""
    assert rows.values("args").distinct().count() == total, "a task queued twice"
    runs = dict(Note.objects.exclude(text="cron").values_list("text").annotate(Count("pk")))
    assert set(runs.values()) == {1}, "a task ran twice"
    again = rows.filter(func_name=tasks.record_run_at_least_once.name)
    assert statuses(again) == {Task.STATUS_SUCCESS: total // 2}
    lost = rows.filter(status=Task.STATUS_LOST)
    assert lost.filter(func_name=tasks.record_run.name).count() == lost.count()
    for error in lost.values_list("error", flat=True):
        assert error.startswith(f"WorkerLost: worker {victim}:"), error
    # Every success wrote once and nothing else did: lost tasks left no Note.
    succeeded = {
        args[0] for args in rows.filter(status=Task.STATUS_SUCCESS).values_list("args", flat=True)
    }
    assert set(runs) == succeeded and len(succeeded) + lost.count() == total
    # At most what the dead workers had claimed: a group per slot.
    assert lost.count() <= PER_MACHINE * CONCURRENCY * 32
    # Finished on the victim before it died: still that attempt's outcome.
    kept = rows.filter(pk__in=finished_there)
    assert statuses(kept) == {Task.STATUS_SUCCESS: len(finished_there)} and finished_there
    assert not kept.exclude(worker__startswith=f"{victim}:").exists()
    # Spread: every machine ran tasks, the dead one included, and most workers did.
    by_host = Counter(
        host_of(name)
        for name in rows.filter(status=Task.STATUS_SUCCESS).values_list("worker", flat=True)
    )
    by_worker = rows.filter(status=Task.STATUS_SUCCESS).values("worker").distinct().count()
    print(f"tasks per machine: {dict(sorted(by_host.items()))}; {by_worker} workers ran tasks")
    assert set(by_host) == {f"machine-{n}" for n in range(MACHINES)}
    assert by_worker >= MACHINES * PER_MACHINE * 3 // 4
