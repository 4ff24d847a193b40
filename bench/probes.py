"""Counters read around a scenario: PostgreSQL's pg_stat_database, Redis's
INFO commandstats on the channel layer's servers, a worker's memory."""

import os
import time
from collections import Counter

import redis
from django.conf import settings
from django.db import connection, connections

from cq.conf import settings as cq_settings

PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


def memory(pid):
    """{"rss": bytes, "peak": bytes} of a Linux process, or None."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None
    try:
        return {"rss": _kib(fields["VmRSS"]), "peak": _kib(fields["VmHWM"])}
    except KeyError:
        return None


def cpu_snapshot(worker_pids):
    """CPU seconds (user + system) used so far, by group: the bench's own
    process (the producer), the given worker processes, every PostgreSQL and
    every redis-server process on this machine (run the bench on a quiet one)."""
    groups = Counter()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            group = _cpu_group(int(pid), worker_pids)
            if group:
                groups[group] += _cpu_seconds(pid)
    return groups


def _cpu_group(pid, worker_pids):
    if pid == os.getpid():
        return "producer"
    if pid in worker_pids:
        return "workers"
    try:
        with open(f"/proc/{pid}/comm") as comm:
            name = comm.read().strip()
    except OSError:
        return None
    if name.startswith("postgres"):
        return "postgres"
    return "redis" if name.startswith("redis-server") else None


def _cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _kib(value):
    return int(value.split()[0]) * 1024


def pg_snapshot():
    """This database's pg_stat_database counters, or None on another database.

    A backend sends its counters at most once a second and when it exits, so
    the caller closes its connections and waits before reading (`settle`).
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    connections.close_all()
    return Counter(dict(zip(PG_COUNTERS, row, strict=True)))


def pg_connections():
    """Connections open to this database right now (this process's included),
    or None on another database."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def settle():
    connections.close_all()
    time.sleep(1.2)


def layer_redis_clients():
    """Clients for each Redis server of cq's channel layer (empty if unknown)."""
    layer = settings.CHANNEL_LAYERS.get(cq_settings.CHANNEL_LAYER, {})
    clients = {}
    for host in layer.get("CONFIG", {}).get("hosts", []):
        address = host.get("address") if isinstance(host, dict) else host
        if isinstance(address, str):
            client = redis.Redis.from_url(address)
        elif isinstance(address, (tuple, list)):
            client = redis.Redis(host=address[0], port=address[1])
        else:
            continue
        kwargs = client.connection_pool.connection_kwargs
        clients.setdefault((kwargs.get("host"), kwargs.get("port")), client)
    return clients


def channel_backlog(layer, clients):
    """Doorbells waiting in cq's channel (channels-redis keeps a channel as a
    sorted set named prefix + channel), or None for another kind of layer."""
    prefix = getattr(layer, "prefix", None)
    if prefix is None or not clients:
        return None
    return sum(client.zcard(prefix + cq_settings.CHANNEL) for client in clients.values())


def redis_snapshot(clients):
    """Calls per command, summed over the layer's Redis servers."""
    calls = Counter()
    for client in clients.values():
        for name, stats in client.info("commandstats").items():
            calls[name.removeprefix("cmdstat_")] += stats["calls"]
    return calls


def redis_clients_connected(clients):
    return sum(client.info("clients")["connected_clients"] for client in clients.values())
