"""Breaking things on purpose: a private redis-server, a TCP proxy to cut the
database or to freeze Redis (connections left open that forward nothing)."""

import socket
import subprocess
import threading
import time

import redis


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart empties it."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process = None

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
