"""Django settings of cq's runs in the anchor harness (bench_cq.py and its workers).

PostgreSQL: the harness's `bench` database, CONN_MAX_AGE 600 as for the other
Django anchors (BENCH_CONN_MAX_AGE overrides it). Channel layer and cache: the
system Redis (127.0.0.1:6379) under the key prefix "cqpeers", so that the
adapter's purge deletes cq's keys only and nobody else's. Capacity 100000 and
expiry 600 s, as for the raw channels-redis rows (a pre-filled N=5000 queue
holds 5000 doorbells); socket_timeout 10 s, above channels-redis' 5 s blocking
receive (cq's check W001).
"""

import os

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# cq before channels: its `runworker` is the one that runs cq-tasks (check E001).
INSTALLED_APPS = ["cq", "channels", "cqapp"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": 5432,
        "NAME": "bench",
        "USER": "bench",
        "PASSWORD": "bench",
        "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "600")),
    }
}

SYS_REDIS_URL = "redis://127.0.0.1:6379/0"
KEY_PREFIX = "cqpeers"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": SYS_REDIS_URL, "socket_timeout": 10}],
            "prefix": KEY_PREFIX,
            "capacity": 100_000,
            "expiry": 600,
        },
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": SYS_REDIS_URL,
        "KEY_PREFIX": KEY_PREFIX,
        "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
    }
}

LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
