"""cq (durable tasks for Django over Channels) in the anchor harness.

This one file is both the adapter (`python bench_cq.py SCENARIO ...`) and the
Django settings module of cq's workers (DJANGO_SETTINGS_MODULE=bench_cq), so
that it can be dropped into the peers folder without touching anything else
there. CQ_REPO (environment) is the cq checkout to measure.

Enqueue: noop.delay(i) = 1 INSERT (autocommit) + a doorbell on `cq-tasks`
(channels-redis on the system Redis); the enqueue time includes the doorbell
sends (flushed at the end). Task body: `taskbody.mark_done(x)`, like every system.
Worker: `python -m django runworker cq-tasks` (cq's own worker: bounded
prefetch, claim by conditional UPDATE); C=2 -> 2 processes of concurrency 1.
PostgreSQL `bench` database, CONN_MAX_AGE 600; layer capacity 100000, expiry
600 s (as for the raw channels rows). Native latency: `task.wait()`.
"""

import os
import sys

CQ_REPO = os.environ.get("CQ_REPO", "")
if CQ_REPO and CQ_REPO not in sys.path:
    sys.path.insert(0, CQ_REPO)

import common  # noqa: E402
from taskbody import mark_done  # noqa: E402

from cq import task  # noqa: E402  (no models, no settings: safe in a settings module)

# ---------------------------------------------------------------- settings

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["cq", "channels"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": common.PG["host"],
        "PORT": common.PG["port"],
        "NAME": common.PG["dbname"],
        "USER": common.PG["user"],
        "PASSWORD": common.PG["password"],
        "CONN_MAX_AGE": 600,
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": common.SYS_REDIS_URL, "socket_timeout": None}],
            "capacity": 100_000,
            "expiry": 600,
        },
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": common.SYS_REDIS_URL,
    }
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}


# ---------------------------------------------------------------- the task


@task("bench.cq.noop")
def noop(cqt, x):
    return mark_done(x)


# ---------------------------------------------------------------- adapter


def main():
    import django
    import redis

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_cq"
    django.setup()
    import bench_cq  # the settings module's instance, registered in the workers too
    from django.core.management import call_command
    from django.db import connection, connections

    from cq.doorbell import doorbell
    from cq.models import Task, WorkerHeartbeat

    call_command("migrate", "cq", verbosity=0)

    class CQAdapter(common.Adapter):
        system = "cq"
        uses_pg = True

        def purge(self):
            redis.Redis.from_url(common.SYS_REDIS_URL).flushdb()
            with connection.cursor() as cursor:
                # Raw: nothing to cascade, and fast on a large table.
                cursor.execute(f"DELETE FROM {Task._meta.db_table}")
                cursor.execute(f"DELETE FROM {WorkerHeartbeat._meta.db_table}")

        def enqueue(self, i):
            return bench_cq.noop.delay(i)

        def enqueue_many(self, start, n):
            for i in range(start, start + n):
                bench_cq.noop.delay(i)
            doorbell.flush(timeout=60)  # an enqueue is done once its doorbell is sent

        def worker_cmds(self, concurrency, results=False):
            env = {
                "DJANGO_SETTINGS_MODULE": "bench_cq",
                "PYTHONPATH": os.pathsep.join(p for p in (str(common.HERE), CQ_REPO) if p),
            }
            cmd = [common.PY, "-m", "django", "runworker", "cq-tasks"]
            return [(cmd, env) for _ in range(concurrency)]

        def native_wait(self, handle, timeout=10.0):
            handle.wait(timeout)
            if handle.status != Task.STATUS_SUCCESS:
                raise TimeoutError(f"task {handle.pk} is {handle.status!r}")

        def before_run(self):
            connections.close_all()

    common.main(CQAdapter())


if __name__ == "__main__":
    main()
