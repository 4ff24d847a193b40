"""Settings for cq's test suite: real Redis, and PostgreSQL or SQLite.

Environment:
  CQ_TEST_DB        "postgres" (default) or "sqlite"
  CQ_TEST_REDIS     Redis URL base, default redis://127.0.0.1:6379
  CQ_TEST_REDIS_DB  Redis database number the tests own, default 13
  CQ_TEST_SUFFIX    makes database names and Redis prefixes unique, so that
                    several test runs can share one machine
  CQ_TEST_DB_NAME   set by the suite for the worker processes it starts: the
                    name of the test database they must use
  CQ_TEST_PG_PORT   PostgreSQL port (fault tests put a proxy in between)
  CQ_TEST_SOCKET_TIMEOUT
                    the channel layer host's socket_timeout, default 10 ("none": None)
  CQ_TEST_CAPACITY, CQ_TEST_CHANNEL_EXPIRY
                    the cq channel layer's `capacity` and `expiry`
  CQ_TEST_SENTINEL  "host:port,...": reach Redis through these sentinels instead
  CQ_TEST_SHARDS    "redis://host:port,...": the channel layer's hosts instead
  CQ_TEST_WORKER_TIMEOUT, CQ_TEST_HEARTBEAT_INTERVAL, CQ_TEST_REQUEUE_AFTER,
  CQ_TEST_HOUSEKEEPING_INTERVAL
                    cq's recovery timings, in seconds (fault tests shorten them)
"""

import os
import tempfile

SUFFIX = os.environ.get("CQ_TEST_SUFFIX", "")
DB_KIND = os.environ.get("CQ_TEST_DB", "postgres")
REDIS_URL = "{}/{}".format(
    os.environ.get("CQ_TEST_REDIS", "redis://127.0.0.1:6379"),
    os.environ.get("CQ_TEST_REDIS_DB", "13"),
)
# Ends with a separator, so that one run's clean-up ("cqtest.*") never matches
# the keys of a run with a suffix ("cqtestdj6.*") sharing the same Redis.
REDIS_PREFIX = f"cqtest{SUFFIX}."

SECRET_KEY = "cq-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.asgi.application"
ALLOWED_HOSTS = ["*"]
# Any origin may open cq.live's sockets here (the consumer tests send none);
# the origin tests narrow ALLOWED_HOSTS with override_settings.
SILENCED_SYSTEM_CHECKS = ["cq.W010"]
# The browser tests serve the admin's CSS through Daphne (tests/live_asgi.py).
STATIC_URL = "/static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "cq",
    "channels",
    "tests.app",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if DB_KIND == "sqlite":
    _path = os.path.join(tempfile.gettempdir(), f"cq-test{SUFFIX}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CQ_TEST_DB_NAME", _path),
            # A file, not memory: worker processes must see the same database.
            "TEST": {"NAME": _path},
            "OPTIONS": {
                # BEGIN IMMEDIATE: writers queue for the lock instead of failing
                # with "database is locked" when a read transaction upgrades.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CQ_TEST_DB_NAME", f"cq{SUFFIX}"),
            "USER": os.environ.get("CQ_TEST_PG_USER", "postgres"),
            "HOST": os.environ.get("CQ_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CQ_TEST_PG_PORT", "5432"),
            "CONN_MAX_AGE": 600,
            "OPTIONS": {"server_side_binding": os.environ.get("CQ_TEST_SERVER_BINDING") == "1"},
        }
    }

# "none" lets fault tests show that cq's deadlines do not rely on it.
_socket_timeout = os.environ.get("CQ_TEST_SOCKET_TIMEOUT", "10")
SOCKET_TIMEOUT = None if _socket_timeout == "none" else float(_socket_timeout)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # Above channels-redis' 5 s blocking receive (check cq.W001); cq's
            # own operations have deadlines (CQ_REDIS_TIMEOUT) whatever it is.
            "hosts": [{"address": REDIS_URL, "socket_timeout": SOCKET_TIMEOUT}],
            "prefix": REDIS_PREFIX,
            "capacity": int(os.environ.get("CQ_TEST_CAPACITY", "1000")),
            "expiry": int(os.environ.get("CQ_TEST_CHANNEL_EXPIRY", "60")),
        },
    },
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_PREFIX,
        # Logs go through the cache: a hung Redis must not hang a task (cq.W004).
        "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
    },
}

# CQ_TEST_SENTINEL="host:port,host:port": the channel layer and the cache
# reach Redis through these sentinels, as master "mymaster" (tests/e2e/test_sentinel.py).
if os.environ.get("CQ_TEST_SENTINEL"):
    SENTINELS = [
        (host, int(port))
        for host, _, port in (a.rpartition(":") for a in os.environ["CQ_TEST_SENTINEL"].split(","))
    ]
    _redis_db = int(REDIS_URL.rsplit("/", 1)[1])
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {
            "sentinels": SENTINELS,
            "master_name": "mymaster",
            "db": _redis_db,
            "socket_timeout": SOCKET_TIMEOUT,
        }
    ]
    CACHES["default"]["LOCATION"] = f"redis://mymaster/{_redis_db}"
    CACHES["default"]["OPTIONS"].update(pool_class="cq.sentinel.SentinelPool", sentinels=SENTINELS)

# CQ_TEST_SHARDS="redis://host:port,redis://host:port": the channel layer has
# these hosts (shards), the cache is on the first (tests/e2e/test_sharded.py).
if os.environ.get("CQ_TEST_SHARDS"):
    _shards = [
        f"{url}/{REDIS_URL.rsplit('/', 1)[1]}" for url in os.environ["CQ_TEST_SHARDS"].split(",")
    ]
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [
        {"address": url, "socket_timeout": SOCKET_TIMEOUT} for url in _shards
    ]
    CACHES["default"]["LOCATION"] = _shards[0]

CQ_HOUSEKEEPING_INTERVAL = float(os.environ.get("CQ_TEST_HOUSEKEEPING_INTERVAL", "0.2"))
CQ_HEARTBEAT_INTERVAL = float(os.environ.get("CQ_TEST_HEARTBEAT_INTERVAL", "5"))
CQ_WORKER_TIMEOUT = float(os.environ.get("CQ_TEST_WORKER_TIMEOUT", "30"))
CQ_REQUEUE_AFTER = float(os.environ.get("CQ_TEST_REQUEUE_AFTER", "10"))

# Django's task API: django.tasks on Django 6, the django-tasks backport on 5.2
# (in the test extra for Python 3.11). cq.backends.CQBackend serves both.
try:
    import django.tasks  # noqa: F401

    DJANGO_TASKS_API = "django.tasks"
except ImportError:
    try:
        import django_tasks  # noqa: F401

        DJANGO_TASKS_API = "django_tasks"
        INSTALLED_APPS.append("django_tasks")
    except ImportError:
        DJANGO_TASKS_API = None

TASKS = {
    "default": {"BACKEND": "cq.backends.CQBackend", "QUEUES": ["default", "emails"]},
    # Django's @task has no retries: a backend's OPTIONS give its tasks cq's.
    "retrying": {"BACKEND": "cq.backends.CQBackend", "OPTIONS": {"retries": 2}},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CQ_TEST_LOG_LEVEL", "WARNING")},
}
