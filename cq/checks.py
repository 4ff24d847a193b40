"""System checks: mistakes in settings that would silently break cq."""

import difflib
import re

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import connections, router

from .conf import DEFAULTS
from .conf import settings as cq_settings


@checks.register()
def check_app_order(app_configs, **kwargs):
    apps = [app for app in settings.INSTALLED_APPS]
    names = [app.split(".apps.")[0] for app in apps]
    if "channels" in names and "cq" in names and names.index("channels") < names.index("cq"):
        return [
            checks.Error(
                "'cq' is listed after 'channels' in INSTALLED_APPS, so `runworker` is "
                "channels' own: it would run cq-tasks without batched claims or recovery.",
                hint="Move 'cq' above 'channels' in INSTALLED_APPS.",
                id="cq.E001",
            )
        ]
    return []


@checks.register()
def check_channel_layer(app_configs, **kwargs):
    if cq_settings.SERIAL:
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    alias = cq_settings.CHANNEL_LAYER
    if alias not in layers:
        return [
            checks.Error(
                f"CQ_CHANNEL_LAYER is {alias!r}, which is not in CHANNEL_LAYERS.",
                hint="Add a channels-redis layer under that alias, or set CQ_CHANNEL_LAYER.",
                id="cq.E002",
            )
        ]
    config = layers[alias].get("CONFIG", {})
    for host in config.get("hosts", []):
        problem = _host_timeout_problem(host)
        if problem:
            return [
                checks.Warning(
                    f"cq channel layer host {_address(host)!r} {problem}",
                    hint="Give the host a socket timeout above channels-redis' 5 s blocking "
                    'receive, e.g. {"address": "redis://127.0.0.1:6379/0", '
                    '"socket_timeout": 10}. cq\'s own operations have deadlines '
                    "(CQ_REDIS_TIMEOUT) whatever this is.",
                    id="cq.W001",
                )
            ]
    return []


# channels-redis' own `receive` blocks this long on Redis (BZPOPMIN).
CHANNELS_REDIS_BLOCK = 5


def _host_timeout_problem(host):
    """Why this host's socket timeout is wrong for the other users of the
    layer (stock consumers, group sends), or "" if it is fine."""
    timeout = (
        host.get("socket_timeout", CHANNELS_REDIS_BLOCK)
        if isinstance(host, dict)
        else CHANNELS_REDIS_BLOCK
    )
    if timeout is None:
        return (
            "has no socket timeout: on a half-open connection (a crashed host, a "
            "partition) anything on the layer but cq hangs until TCP keepalive gives up."
        )
    if timeout <= CHANNELS_REDIS_BLOCK:
        return (
            f"has a socket timeout of {timeout}s (redis-py's default is 5 s): "
            "channels-redis' blocking receive waits 5 s, so a stock consumer on "
            "this layer fails whenever it is idle (channels_redis issue 422)."
        )
    return ""


def _address(host):
    if isinstance(host, dict):
        return host.get("address") or host.get("master_name") or host
    return host


@checks.register()
def check_cache_timeout(app_configs, **kwargs):
    # Task logs go through this cache; with no socket timeout a half-open
    # Redis connection would hang the task thread that writes them.
    cache = getattr(settings, "CACHES", {}).get(cq_settings.CACHE, {})
    if not cache.get("BACKEND", "").endswith("RedisCache"):
        return []
    if cache.get("OPTIONS", {}).get("socket_timeout") is None:
        return [
            checks.Warning(
                f"the cq cache {cq_settings.CACHE!r} is a Redis cache without a socket timeout.",
                hint='Add "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5} to it.',
                id="cq.W004",
            )
        ]
    return []


# Cache backends that keep nothing other processes can see, and why it matters.
PER_PROCESS_CACHES = {
    "LocMemCache": "keeps its entries in each process: the log lines that subtasks "
    "write on other workers are lost",
    "DummyCache": "stores nothing: every task log line is dropped",
}


@checks.register()
def check_cache_is_shared(app_configs, **kwargs):
    # One process runs everything in serial mode, and with an in-memory
    # channel layer (which reaches no other process) a per-process cache fits.
    layer = getattr(settings, "CHANNEL_LAYERS", {}).get(cq_settings.CHANNEL_LAYER, {})
    if cq_settings.SERIAL or layer.get("BACKEND", "").endswith("InMemoryChannelLayer"):
        return []
    backend = getattr(settings, "CACHES", {}).get(cq_settings.CACHE, {}).get("BACKEND", "")
    kind = backend.rpartition(".")[2]
    if kind not in PER_PROCESS_CACHES:
        return []
    return [
        checks.Warning(
            f"the cq cache {cq_settings.CACHE!r} is a {kind}, which {PER_PROCESS_CACHES[kind]}.",
            hint="Point CQ_CACHE at a cache all workers share, e.g. "
            '"django.core.cache.backends.redis.RedisCache".',
            id="cq.W005",
        )
    ]


SETTINGS_LIST = "cq's settings are listed in docs/settings.md (defaults in cq/conf.py)."


@checks.register()
def check_unknown_settings(app_configs, **kwargs):
    # A typo (CQ_RESULTS_TTL) would otherwise leave the default silently in force.
    known = [f"CQ_{name}" for name in DEFAULTS]
    warnings = []
    for name in sorted(dir(settings)):
        if name.startswith("CQ_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            warnings.append(
                checks.Warning(
                    f"{name} is not a cq setting; cq ignores it.",
                    hint=f"Did you mean {close[0]}?" if close else SETTINGS_LIST,
                    id="cq.W006",
                )
            )
    return warnings


@checks.register()
def check_time_zone_support(app_configs, **kwargs):
    if settings.USE_TZ:
        return []
    return [
        checks.Warning(
            "USE_TZ is False: repeating tasks, run_after and countdown compute aware "
            "datetimes, which a database without time zone support rejects or misreads.",
            hint="Set USE_TZ = True (Django's default since 5.0).",
            id="cq.W002",
        )
    ]


@checks.register()
def check_worker_timeout(app_configs, **kwargs):
    # A live worker must be able to miss a beat or two (a slow database write)
    # without being presumed dead and having its tasks requeued.
    if cq_settings.WORKER_TIMEOUT < 3 * cq_settings.HEARTBEAT_INTERVAL:
        return [
            checks.Warning(
                f"CQ_WORKER_TIMEOUT ({cq_settings.WORKER_TIMEOUT}s) is less than three "
                f"heartbeats (CQ_HEARTBEAT_INTERVAL={cq_settings.HEARTBEAT_INTERVAL}s): "
                "a live worker may be presumed dead and its tasks run twice.",
                hint="Make CQ_WORKER_TIMEOUT at least 3 x CQ_HEARTBEAT_INTERVAL "
                "(default 30s / 5s).",
                id="cq.W003",
            )
        ]
    return []


# `PRAGMA journal_mode=WAL` in an init_command, however it is spaced or quoted.
_WAL_COMMAND = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


@checks.register()
def check_sqlite_locking(app_configs, **kwargs):
    # Workers, producers and web requests write one SQLite file at once. In
    # its default rollback journal readers block the writer, and a DEFERRED
    # transaction that starts reading and then writes fails at once with
    # "database is locked" (no busy timeout helps): measured, 643 of 1,113
    # logging tasks lost their log lines that way, their outcomes intact.
    # Not tagged `database`: `manage.py check` and runworker must run it, and
    # it opens no Django connection.
    model = apps.get_model("cq", "Task")
    aliases = dict.fromkeys([router.db_for_write(model), router.db_for_read(model)])
    return [
        warning
        for alias in aliases
        for warning in sqlite_locking_problems(alias, connections.settings[alias])
    ]


def sqlite_locking_problems(alias: str, config: dict) -> list[checks.CheckMessage]:
    """cq.W008 if the database `alias`, as DATABASES[alias] = `config` sets it,
    is SQLite without WAL or without BEGIN IMMEDIATE; nothing for other databases."""
    if not config.get("ENGINE", "").endswith("sqlite3"):
        return []
    options = config.get("OPTIONS") or {}
    missing = []
    if not _WAL_COMMAND.search(options.get("init_command", "")) and not _is_wal(config["NAME"]):
        missing.append("WAL journal mode")
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        missing.append('"transaction_mode": "IMMEDIATE"')
    if not missing:
        return []
    return [
        checks.Warning(
            f"SQLite database {alias!r} has no {' and no '.join(missing)}: under load, "
            "workers and web requests fail with 'database is locked', and cq drops the "
            "log lines it cannot store (outcomes are kept).",
            hint='Add to its OPTIONS: "transaction_mode": "IMMEDIATE", "timeout": 30, '
            '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" '
            "(see docs/settings.md).",
            id="cq.W008",
        )
    ]


def _is_wal(name) -> bool:
    """Whether the database file is in WAL mode already: the mode persists in
    the file, as its header's read and write versions (bytes 18 and 19: 2 for
    WAL, 1 for the rollback journal). Read from the file's first bytes, not
    through SQLite: even a read-only connection to a WAL file creates its -wal
    and -shm files, and a check must leave the database alone."""
    path = str(name)
    if not path or path == ":memory:" or path.startswith("file:"):
        return False
    try:
        with open(path, "rb") as database:
            header = database.read(20)
    except OSError:  # not created yet: `migrate` makes it, with the init_command's mode
        return False
    return header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"


@checks.register()
def check_outage_poll_interval(app_configs, **kwargs):
    # Read by every worker as a number of seconds to sleep: a string or a
    # negative value would only fail once Redis is down, when it is needed.
    value = cq_settings.OUTAGE_POLL_INTERVAL
    if value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    ):
        return []
    return [
        checks.Error(
            f"CQ_OUTAGE_POLL_INTERVAL is {value!r}; it must be a positive number of seconds "
            "or None.",
            hint="Use the default 1.0 (a claim per second per idle worker while Redis is "
            "down), or None to wait for Redis instead.",
            id="cq.E003",
        )
    ]


@checks.register()
def check_live_allowed_origins(app_configs, **kwargs):
    from .live import origins

    configured = cq_settings.LIVE_ALLOWED_ORIGINS
    if configured is not None and not isinstance(configured, list | tuple):
        # A bare string would be read one character at a time.
        problems = [f"it is {configured!r}, not a list"]
    else:
        problems = [p for p in map(origins.pattern_problem, configured or ()) if p]
    if problems:
        return [
            checks.Error(
                f"CQ_LIVE_ALLOWED_ORIGINS cannot be used: {'; '.join(problems)}.",
                hint='List the origins of your pages, e.g. ["https://shop.example.com"], '
                'or host patterns as in ALLOWED_HOSTS (".example.com"); None uses ALLOWED_HOSTS.',
                id="cq.E010",
            )
        ]
    if "*" in origins.allowed_origins() and not settings.DEBUG:
        source = "ALLOWED_HOSTS" if configured is None else "CQ_LIVE_ALLOWED_ORIGINS"
        return [
            checks.Warning(
                f"{source} has '*': cq.live's WebSockets accept a handshake from any "
                "site's page, which the browser makes with the user's session cookie.",
                hint="Set CQ_LIVE_ALLOWED_ORIGINS to your pages' origins, e.g. "
                '["https://shop.example.com"].',
                id="cq.W010",
            )
        ]
    return []


@checks.register()
def check_live_recheck_interval(app_configs, **kwargs):
    interval = cq_settings.LIVE_RECHECK_INTERVAL
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
        return []
    return [
        checks.Error(
            f"CQ_LIVE_RECHECK_INTERVAL is {interval!r}: a watcher who may no longer watch "
            "would never be disconnected.",
            hint="Give the seconds between two checks of a watcher's right: 5.0 is the default.",
            id="cq.E011",
        )
    ]
