"""The block `runworker cq-tasks` prints as it starts: what this worker runs, and on what.

Printed by the command rather than logged, so that it shows whatever LOGGING
says (Django's default hides INFO lines), and out of the worker's loop. It
names the database and Redis the worker uses, which is what a newcomer
running the wrong settings module needs to see first; passwords are masked.
"""

from django.conf import settings
from django.db import connection

from . import __version__, registry

# Up to this many task names are listed; beyond, only how many there are.
LISTED_TASKS = 10


def banner(worker) -> str:
    """The start-up block of `worker` (a cq.worker.Worker), one fact per line."""
    return "\n".join(
        [
            f"cq {__version__} worker {worker.name}",
            f"  queues:        {', '.join(worker.queues)}",
            f"  concurrency:   {worker.concurrency}",
            f"  scheduler:     {'on' if worker.scheduler else 'off'}",
            f"  database:      {database()}",
            f"  channel layer: {channel_layer(worker.layer_alias)}",
            f"  tasks:         {tasks()}",
        ]
    )


def database():
    """e.g. 'postgresql mydb on db.example:5432'."""
    config = connection.settings_dict
    text = f"{connection.vendor} {config.get('NAME')}"
    host = config.get("HOST")
    if host:
        port = config.get("PORT")
        text += f" on {host}:{port}" if port else f" on {host}"
    return text


def channel_layer(alias):
    """e.g. 'default: channels_redis.core.RedisChannelLayer redis://127.0.0.1:6379'."""
    config = settings.CHANNEL_LAYERS.get(alias, {})
    text = f"{alias}: {config.get('BACKEND', '?')}"
    hosts = config.get("CONFIG", {}).get("hosts") or []
    if hosts:
        text += " " + ", ".join(_host(host) for host in hosts)
    return text


def _host(host):
    # channels-redis takes a URL, a (host, port) pair, or a dict with an
    # "address" (its other keys, a password among them, are not shown).
    if isinstance(host, dict):
        if "sentinels" in host:
            sentinels = ", ".join(_host(sentinel) for sentinel in host["sentinels"])
            return f"sentinels {sentinels} master {host.get('master_name')}"
        host = host.get("address", "?")
    if isinstance(host, list | tuple):
        return ":".join(str(part) for part in host)
    return mask_password(str(host))


def mask_password(url):
    """`url` with the password of its user part, if any, written as ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    userinfo = f"{user}:***" if colon else "***"
    return f"{scheme}://{userinfo}@{hostport}{slash}{path}"


def tasks():
    names = registry.names()
    if names and len(names) <= LISTED_TASKS:
        return f"{len(names)} registered: {', '.join(names)}"
    return f"{len(names)} registered"
