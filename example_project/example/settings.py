"""Settings of cq's example project.

SQLite (in WAL mode) is the database. When Redis answers at CQ_DEMO_REDIS
(default redis://127.0.0.1:6379/0), Redis carries the doorbells and buffers the
logs, and the demo starts real `runworker cq-tasks` processes; when it does not,
the in-memory channel layer and a local-memory cache are used, with the worker
in the demo's own process. Environment:

  CQ_DEMO_REDIS   Redis URL to try
  CQ_DEMO_LAYER   "redis" or "memory", to skip the probe (the demo sets it for
                  the workers it starts, so that they agree with it)
  CQ_DEMO_PREFIX  Redis key prefix; unique per demo run unless given
  CQ_DEMO_DB      SQLite file, default db.sqlite3 next to manage.py
"""

import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "cq-example-project-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "example.urls"
ASGI_APPLICATION = "example.asgi.application"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    # cq before channels: cq's `runworker` then wins over channels' own.
    "cq",
    "channels",
    "demo",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CQ_DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {
            # WAL lets readers work while a task writes; IMMEDIATE makes writers
            # queue for the lock instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }
}

REDIS_URL = os.environ.get("CQ_DEMO_REDIS", "redis://127.0.0.1:6379/0")
DEMO_PREFIX = os.environ.get("CQ_DEMO_PREFIX", f"cqdemo-{uuid.uuid4().hex[:8]}")


def _redis_answers(url):
    """Whether something listens at the Redis URL (an example's convenience: a
    real project configures its layer and does not probe at start-up)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


DEMO_LAYER = os.environ.get("CQ_DEMO_LAYER") or ("redis" if _redis_answers(REDIS_URL) else "memory")

if DEMO_LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A socket timeout above channels-redis' 5 s blocking receive
                # (check cq.W001); cq's own operations have their own deadlines.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 10}],
                "prefix": DEMO_PREFIX,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": DEMO_PREFIX,
            # Task logs go through the cache: a hung Redis must not hang a task.
            "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# cq's settings, each at its default except where the demo wants it faster.
CQ_CHANNEL_LAYER = "default"
CQ_CHANNEL = "cq-tasks"
CQ_CACHE = "default"
CQ_SERIAL = False
CQ_RESULT_TTL = 7 * 24 * 3600
CQ_MAX_LOG_LINES = 1000
CQ_HOUSEKEEPING_INTERVAL = 0.5
# The demo's live page has no login: anyone may watch (demo/live.py).
CQ_LIVE_PERMISSION = "demo.live.anyone"

TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
