"""cq (durable tasks for Django over Channels) on PostgreSQL, doorbells on channels-redis.

Enqueue: noop.delay(i) = 1 INSERT (autocommit) + a doorbell on the `cq-tasks`
channel, sent by a background thread; the timed loop ends with doorbell.flush(),
so enqueue rates include the sends.
Worker: `manage.py runworker cq-tasks --concurrency K` (K task threads per
process, default 8; --threads K changes it); C=2 -> 2 processes.
Settings: djbench/settings_cq.py (the `bench` database, CONN_MAX_AGE 600; layer
and cache on the system Redis under the key prefix "cqpeers", capacity 100000).
Purge deletes cq's rows and the "cqpeers" keys only: the system Redis may serve
others. cq's migrations run at every start (the measured checkout may add some).
Native latency: task.wait(timeout) (a pub/sub message when the task finishes).
"""

import os
import sys

import common

THREADS = "8"
if "--threads" in sys.argv:
    k = sys.argv.index("--threads")
    THREADS = sys.argv[k + 1]
    del sys.argv[k : k + 2]

os.environ["DJANGO_SETTINGS_MODULE"] = "djbench.settings_cq"
import django  # noqa: E402

django.setup()
import redis  # noqa: E402
from cqapp.tasks import noop  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from cq.doorbell import doorbell  # noqa: E402
from cq.models import Task, WorkerHeartbeat  # noqa: E402


class CQAdapter(common.Adapter):
    system = "cq" if THREADS == "1" else f"cq-{THREADS}threads"
    uses_pg = True

    def purge(self):
        with connection.cursor() as cursor:  # raw: nothing to cascade, fast on a large table
            cursor.execute(f"DELETE FROM {Task._meta.db_table}")
            cursor.execute(f"DELETE FROM {WorkerHeartbeat._meta.db_table}")
        r = redis.Redis.from_url(settings.SYS_REDIS_URL)
        keys = list(r.scan_iter(match=f"{settings.KEY_PREFIX}*", count=1000))
        if keys:
            r.delete(*keys)

    def enqueue(self, i):
        return noop.delay(i)

    def enqueue_many(self, start, n):
        for i in range(start, start + n):
            noop.delay(i)
        doorbell.flush(timeout=60)  # an enqueue is done once its doorbell is sent

    def worker_cmds(self, concurrency, results=False):
        cmd = [common.PY, "manage.py", "runworker", "cq-tasks", "--concurrency", THREADS]
        env = {"DJANGO_SETTINGS_MODULE": "djbench.settings_cq"}
        return [(cmd, env) for _ in range(concurrency)]

    def native_wait(self, handle, timeout=10.0):
        handle.wait(timeout)
        if handle.status != Task.STATUS_SUCCESS:
            raise TimeoutError(f"task {handle.pk} is {handle.status!r}")

    def before_run(self):
        connections.close_all()


if __name__ == "__main__":
    call_command("migrate", "cq", verbosity=0)
    common.main(CQAdapter())
