"""Breaking things on purpose: a private redis-server, a Sentinel-managed pair
of them to fail over, a TCP proxy to cut the database or to freeze Redis
(connections left open that forward nothing)."""

import itertools
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

# Lanes run side by side (tests/lanes.py): each takes its servers' ports from a
# range of its own, below the kernel's ephemeral ports (32768 and up), so two
# lanes never pick the same free port, and none is picked by an outgoing
# connection meanwhile. Alone (CQ_TEST_PORT_BASE unset), the kernel picks.
_PORT_BASE = int(os.environ.get("CQ_TEST_PORT_BASE", "0"))
_ports = itertools.count(_PORT_BASE)


def free_port():
    """A port of 127.0.0.1 that nothing listens on, for a server the test starts."""
    if not _PORT_BASE:
        return _bound_port(0)
    for port in _ports:
        if port >= _PORT_BASE + 1000:
            raise RuntimeError(f"no free port left in {_PORT_BASE}-{_PORT_BASE + 999}")
        try:
            return _bound_port(port)
        except OSError:
            continue


def _bound_port(port):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart empties it."""

    def __init__(self, *args):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process = None
        # More redis-server arguments (--replicaof host port).
        self.args = [str(arg) for arg in args]

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class SentinelCluster:
    """A primary redis-server, a replica of it and `count` sentinels that watch
    them as MASTER_NAME, quick to fail over: a primary silent for
    `down_after` ms is replaced by its replica. `stop()` kills them all."""

    MASTER_NAME = "mymaster"

    def __init__(self, count=1, down_after=1000, failover_timeout=3000):
        self.primary = RedisServer()
        # Loading the primary's data from the socket, not through a dump.rdb
        # written into the working directory.
        self.replica = RedisServer(
            "--replicaof", "127.0.0.1", self.primary.port, "--repl-diskless-load", "on-empty-db"
        )
        self.sentinel_ports = [free_port() for _ in range(count)]
        self.quorum = count // 2 + 1
        self.down_after, self.failover_timeout = down_after, failover_timeout
        self._processes = []
        self._dir = None

    @property
    def sentinels(self):
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()  # no server left behind by a failed start
            raise

    def _start(self):
        self.primary.start()
        self.replica.start()
        # Replicating before the sentinels look: they ask the primary for its
        # replicas when they connect, and otherwise only every 10 s.
        primary = redis.Redis(port=self.primary.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while primary.info("replication").get("slave0", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up with the primary")
            time.sleep(0.05)
        primary.close()
        # Sentinel rewrites its configuration file: each gets one of its own.
        self._dir = tempfile.TemporaryDirectory(prefix="cq-sentinel-")
        for port in self.sentinel_ports:
            conf = Path(self._dir.name) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {self._dir.name}\n"
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.primary.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} {self.down_after}\n"
                f"sentinel failover-timeout {self.MASTER_NAME} {self.failover_timeout}\n"
                f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
            )
            self._processes.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Ready once every sentinel knows the primary, its replica and the
        # other sentinels (which must vote for a failover).
        deadline = time.monotonic() + 20
        while not all(self._ready(port) for port in self.sentinel_ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not find the primary and its replica")
            time.sleep(0.1)

    def master_port(self, port=None):
        """The primary's port as a sentinel (the first, or that on `port`) names it."""
        client = redis.Redis(port=port or self.sentinel_ports[0], socket_timeout=1)
        try:
            return int(client.sentinel_get_master_addr_by_name(self.MASTER_NAME)[1])
        finally:
            client.close()

    def _ready(self, port):
        client = redis.Redis(port=port, socket_timeout=1)
        try:
            replicas = client.sentinel_slaves(self.MASTER_NAME)
            others = client.sentinel_sentinels(self.MASTER_NAME)
            return len(others) == len(self.sentinel_ports) - 1 and any(
                r["port"] == self.replica.port and "s_down" not in r["flags"] for r in replicas
            )
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self):
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self._processes = []
        self.primary.stop()
        self.replica.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


class TcpProxy:
    """Forwards 127.0.0.1:port to a server; `cut()` drops every connection and
    refuses new ones, as a database that went away; `restore()` undoes it.

    `freeze()` is a half-open peer (a crashed host, a partition): the existing
    connections stay open but forward nothing, in either direction; new ones
    work (`new="work"`) or are accepted and hang as well (`new="hang"`)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets = set()
        self._listener = None
        # Client sockets whose traffic is swallowed, and whether new ones are.
        self._frozen = set()
        self._hang_new = False

    def freeze(self, new="work"):
        if new not in ("work", "hang"):
            raise ValueError(f"new must be 'work' or 'hang', got {new!r}")
        with self._lock:
            self._frozen.update(self._sockets)
            self._hang_new = new == "hang"

    def start(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self):
        listener, self._listener = self._listener, None
        # Closing alone would not wake the thread blocked in accept(), which
        # would go on accepting connections.
        _close(listener)
        with self._lock:
            for sock in self._sockets:
                _close(sock)
            self._sockets.clear()

    restore = start

    def stop(self):
        if self._listener is not None:
            self.cut()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                hang = self._hang_new
                self._sockets.add(client)
                if hang:
                    self._frozen.add(client)
            if hang:
                # Accepted, then silence: read and swallow what the client says.
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets.add(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                if sink is not None and not self._frozen.intersection((source, sink)):
                    sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)


def _close(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
