"""cq behind PgBouncer in transaction pooling mode, with real workers.

In transaction mode a client's transactions may each run on another server
connection, so anything kept in a session between two transactions breaks:
advisory locks taken with pg_advisory_lock, LISTEN, SET without LOCAL,
prepared statements, temporary tables, cursors WITH HOLD. cq uses none of
them: its claim's `set_config('synchronous_commit', 'off', true)` is local
to the claim's transaction, FOR UPDATE SKIP LOCKED is inside that one
statement, wait() and cancels go through Redis, and Django (psycopg 3)
prepares no statements and binds parameters client-side by default.

The pool here has fewer server connections than there are clients, so the
workers' transactions and this process's really share server connections.
Runs where a `pgbouncer` binary is found (Debian: apt-get install pgbouncer).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from cq.models import RepeatingTask, Task, WorkerHeartbeat
from tests.app import tasks
from tests.app.models import Note
from tests.faults import free_port
from tests.helpers import FAST, TIMEOUT, errors, refreshed, statuses, unfinished, wait_until

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CQ_TEST_DB", "postgres") != "postgres", reason="PgBouncer is PostgreSQL's"
    ),
    pytest.mark.skipif(not PGBOUNCER, reason="no pgbouncer binary (apt-get install pgbouncer)"),
]

# Server connections per database and user: fewer than the clients below
# (2 workers of 2 slots hold 10, this process 1), so transactions interleave.
POOL_SIZE = 3


class PgBouncer:
    """A private pgbouncer in transaction pooling mode on a free port, in front
    of the test suite's PostgreSQL, with trust authentication."""

    def __init__(self, host, port, user):
        self.upstream = int(port)
        self.port = free_port()
        # World-readable: as root, pgbouncer must be told to run as another user.
        self.directory = Path(tempfile.mkdtemp(prefix="cq-pgbouncer-"))
        self.directory.chmod(0o755)
        users = self.directory / "userlist.txt"
        users.write_text(f'"{user}" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\n"
            f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\n"
            "max_client_conn = 200\n"
            # Closes its server connections soon, so that the test database can be dropped.
            "server_idle_timeout = 2\n"
        )
        for path in (users, config):
            path.chmod(0o644)
        command = [PGBOUNCER, str(config)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]  # it refuses to run as root
        self.log = open(self.directory / "pgbouncer.log", "w+")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._answers, 10, interval=0.1, message="pgbouncer to accept connections")

    def _answers(self):
        try:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
            ):
                return True
        except psycopg.OperationalError:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"pgbouncer exited: {self.log.read()}") from None
            return False

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def pgbouncer(transactional_db):
    settings = connection.settings_dict
    bouncer = PgBouncer(settings["HOST"], settings["PORT"], settings["USER"])
    direct = settings["PORT"]
    # This process too goes through it, from here to the test's end.
    connection.close()
    settings["PORT"] = str(bouncer.port)
    try:
        yield bouncer
    finally:
        connection.close()
        settings["PORT"] = direct
        bouncer.stop()


def server_connections(database, port, samples, done):
    """Sample the connections to `database` that PostgreSQL itself sees
    (autocommit: in a transaction, pg_stat_activity would read one snapshot)."""
    conninfo = {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}
    with psycopg.connect(**conninfo, autocommit=True) as pg:
        while not done.is_set():
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            samples.append(pg.execute(query, [database]).fetchone()[0])
            done.wait(0.1)


def test_workers_delay_wait_retries_cron_and_recovery_through_pgbouncer(pgbouncer, start_worker):
    samples, done = [], threading.Event()
    sampler = threading.Thread(
        target=server_connections,
        args=(connection.settings_dict["NAME"], pgbouncer.upstream, samples, done),
    )
    sampler.start()
    try:
        env = {**FAST, "CQ_TEST_PG_PORT": str(pgbouncer.port)}
        workers = [start_worker("--concurrency", "2", env=env) for _ in range(2)]
        wait_until(lambda: WorkerHeartbeat.objects.count() == 2, 60, message="two heartbeats")

        # .delay() and wait(), one at a time; a bulk enqueue; a tree; a retry.
        for n in range(10):
            assert tasks.add.delay(n, n).wait(timeout=30).result == 2 * n
        bulk = [t.pk for t in tasks.record_run.delay_many([(f"bulk {n}",) for n in range(300)])]
        tree = tasks.spawn.delay(5)
        retried = tasks.flaky.delay("pgbouncer:flaky", 1)

        # A repeating task: two occurrences, each taken by one worker's compare-and-set.
        repeating = RepeatingTask.schedule("0 0 1 1 *", tasks.record_run, ("cron",))
        rows = RepeatingTask.objects.filter(pk=repeating.pk)
        for n in range(2):
            due = timezone.now() + timedelta(seconds=0.3)
            rows.update(next_run=due)
            wait_until(lambda due=due: rows.get().next_run != due, 30, message=f"occurrence {n}")
            wait_until(
                lambda n=n: Note.objects.filter(text="cron").count() == n + 1,
                30,
                message=f"cron run {n}",
            )

        # A worker killed mid-task: the other one's sweeper requeues it.
        hanging = tasks.write_then_hang_once.delay("killed once", 300)
        wait_until(lambda: cache.get(f"wrote:{hanging.pk}:0"), 30, message="the task's write")
        [victim] = [w for w in workers if w.pid == int(refreshed(hanging).worker.split(":")[1])]
        victim.kill()

        wait_until(lambda: not unfinished(bulk), 120, message="the bulk tasks")
        for task in (tree, retried, hanging):
            refreshed(task).wait(TIMEOUT + 60)
    finally:
        done.set()
        sampler.join(10)

    assert statuses(bulk) == {Task.STATUS_SUCCESS: 300}, errors(bulk)
    runs = dict(Note.objects.values_list("text").annotate(Count("pk")))
    assert runs == {**{f"bulk {n}": 1 for n in range(300)}, "cron": 2, "killed once": 1}
    assert (tree.status, tree.result) == (Task.STATUS_SUCCESS, "spawned"), tree.error
    assert (retried.status, retried.result, retried.retries) == (Task.STATUS_SUCCESS, 2, 1)
    assert (hanging.status, hanging.retries) == (Task.STATUS_SUCCESS, 1), hanging.error
    # Everything went through the pool: PostgreSQL never saw more than its
    # server connections, where 2 workers alone hold 8 or more of their own.
    print(f"server connections: peak {max(samples)} over {len(samples)} samples")
    assert max(samples) <= POOL_SIZE
