"""`manage.py cq_demo`: run the demo workflow on real workers and report on it.

With Redis, two `runworker cq-tasks` processes do the work and are stopped with
SIGTERM at the end; without it, cq's Worker runs in a thread of this process on
the in-memory channel layer (which only works within one process).
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cq import logs
from cq.models import Task, WorkerHeartbeat
from cq.worker import Worker
from demo import report
from demo.tasks import analyse, fetch_quote, headline, summarise

DOCUMENTS = {
    "zen": "Beautiful is better than ugly. Explicit is better than implicit.",
    "django": "The web framework for perfectionists with deadlines.",
    "channels": "Channels extends Django to handle WebSockets and background work.",
    "redis": "An in-memory data store used as a database, cache and message broker.",
    "cq": "Durable background tasks for Django: the row is the truth, the channel a doorbell.",
}


class Command(BaseCommand):
    help = "Run cq's demo workflow on real workers and print what happened."

    def add_arguments(self, parser):
        parser.add_argument(
            "--linger",
            type=float,
            default=0,
            help="Seconds to keep the workers and the live page up after the "
            "workflow, to look at it in a browser (default 0).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=120,
            help="Seconds to wait for the tasks (default 120).",
        )

    def handle(self, *args, **options):
        started = time.monotonic()
        with self._workers(), self._live_server() as live_url:
            roots = self._launch()
            if live_url:
                self.stdout.write(
                    f"Watch it live: {live_url}/tasks/{roots[0].pk}/ "
                    '(`make demo DEMO_ARGS="--linger 120"` keeps it up after the workflow)\n'
                )
            self._wait(roots, options["timeout"])
            time.sleep(options["linger"])
        elapsed = time.monotonic() - started
        self._report(roots, elapsed)

    @contextmanager
    def _workers(self):
        if settings.DEMO_LAYER == "redis":
            self.stdout.write(
                f"Redis answers at {settings.REDIS_URL}: starting 2 `runworker cq-tasks` processes."
            )
            with _worker_processes(self.stdout.write, count=2):
                yield
        else:
            self.stdout.write(
                f"No Redis at {settings.REDIS_URL}: in-memory channel layer, "
                "cq's Worker in a thread of this process."
            )
            with _worker_thread(self.stdout.write):
                yield

    @contextmanager
    def _live_server(self):
        """Daphne serving the live page, when the workers are other processes
        (the in-memory layer reaches no other process) and Daphne is installed."""
        if settings.DEMO_LAYER != "redis" or importlib.util.find_spec("daphne") is None:
            self.stdout.write("No live page: it needs Redis and Daphne (pip install daphne).")
            yield None
            return
        with _daphne() as url:
            yield url

    def _launch(self):
        # In a transaction, as in a view: the doorbells ring once it commits.
        with transaction.atomic():
            analysis = analyse.delay(DOCUMENTS)
            analysis.chain(summarise, (str(analysis.pk),))
            title = headline.delay("cq is running")
            quote = fetch_quote.delay(f"{settings.DEMO_PREFIX}:quote:{uuid.uuid4().hex}")
        self.stdout.write("Queued 3 workflows; waiting for them...\n")
        return [analysis, title, quote]

    def _wait(self, roots, timeout):
        trees = Task.objects.filter(Q(pk__in=[r.pk for r in roots]) | Q(root__in=roots))
        deadline = time.monotonic() + timeout
        # A tree's log lines reach its root's row just after the tree's end
        # commits (cq stores them in a transaction of their own): wait for both.
        while trees.active().exists() or any(logs.buffered(root.pk) for root in roots):
            if time.monotonic() > deadline:
                raise CommandError(f"the demo's tasks did not finish within {timeout:.0f} s")
            time.sleep(0.1)

    def _report(self, roots, elapsed):
        write = self.stdout.write
        for root in roots:
            root.refresh_from_db()
            write("")
            report.print_tree(write, root)
            report.print_logs(write, root)
        count = Task.objects.filter(Q(pk__in=[r.pk for r in roots]) | Q(root__in=roots)).count()
        write(f"\n{count} tasks finished in {elapsed:.2f} s (worker start and stop included).")
        failed = [root for root in roots if root.status != Task.STATUS_SUCCESS]
        if failed:
            raise CommandError(f"{len(failed)} workflow(s) did not succeed")


@contextmanager
def _worker_processes(write, count):
    env = {**os.environ, "CQ_DEMO_LAYER": "redis", "CQ_DEMO_PREFIX": settings.DEMO_PREFIX}
    manage = os.path.join(settings.BASE_DIR, "manage.py")
    with tempfile.NamedTemporaryFile(
        "w", prefix="cq-demo-workers-", suffix=".log", delete=False
    ) as output:
        processes = [
            subprocess.Popen(
                [sys.executable, manage, "runworker", "cq-tasks", "--concurrency", "2"],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=output,
                stderr=output,
            )
            for _ in range(count)
        ]
        try:
            _wait_for_heartbeats(processes, count, output.name)
            yield
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [_stopped(process) for process in processes]
    write(f"Workers stopped with SIGTERM, exit codes {codes}; their output: {output.name}")


@contextmanager
def _daphne():
    env = {**os.environ, "CQ_DEMO_LAYER": "redis", "CQ_DEMO_PREFIX": settings.DEMO_PREFIX}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", prefix="cq-demo-daphne-", suffix=".log") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["example.asgi:application"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=output,
        )
        try:
            _wait_listening(server, port, output.name)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            _stopped(server)


def _wait_listening(server, port, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                message = f"the live page's server did not start; see {log_path}"
                raise CommandError(message) from None
            time.sleep(0.1)


def _wait_for_heartbeats(processes, count, log_path, timeout=60):
    since, deadline = timezone.now(), time.monotonic() + timeout
    # Only heartbeats of these workers: a killed earlier run may have left some.
    while WorkerHeartbeat.objects.filter(started__gte=since).count() < count:
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise CommandError(f"the workers did not start; their output: {log_path}")
        time.sleep(0.1)


def _stopped(process):
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def _worker_thread(write):
    worker = Worker(concurrency=2)
    thread = threading.Thread(target=worker.run, name="cq-demo-worker")
    thread.start()
    if not worker.started.wait(30):
        raise CommandError("the in-process worker did not start")
    try:
        yield
    finally:
        worker.stop()
        thread.join(60)
        write(f"In-process worker stopped after {worker.handled} tasks.")
