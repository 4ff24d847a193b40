"""Settings shared by cq's benchmark settings modules (`settings_pg`, `settings_sqlite`).

Tuned for measuring, not for defaults: persistent database connections
(CONN_MAX_AGE), Redis sockets with a read timeout above channels-redis' 5 s
blocking receive (check cq.W001), a channel capacity and expiry large enough for a
pre-filled queue, and logging at WARNING so no run pays for per-task log lines.

Environment:
  CQ_BENCH_REDIS   Redis URL of the channel layer and cache,
                   default redis://127.0.0.1:6379/0 (keys are prefixed "cqbench")
"""

import os

REDIS_URL = os.environ.get("CQ_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "cqbench"

SECRET_KEY = "cq-bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# "bench" is the app that holds the `cq_bench` command and the no-op task:
# only these settings install it, so it is in no user's `manage.py help`.
INSTALLED_APPS = ["cq", "channels", "bench"]

# Large enough for a pre-filled queue of every run the bench makes (it checks);
# the expiry covers a backlog that takes minutes to drain.
CHANNEL_CAPACITY = 200_000
CHANNEL_EXPIRY = 600

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 10}],
            "prefix": REDIS_PREFIX,
            "capacity": CHANNEL_CAPACITY,
            "expiry": CHANNEL_EXPIRY,
        },
    },
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_PREFIX,
        "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
