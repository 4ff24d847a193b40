"""Completion counters on a Redis that is not the channel layer's.

The no-op task marks each completion here (count, first and last completion
time); the bench polls the count every few milliseconds. Worker processes find
the URL and key prefix in the environment (`ENV_URL`, `ENV_PREFIX`).
By default the bench starts a private `redis-server` for this, so that
`INFO commandstats` on the layer's Redis counts cq's commands only.
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import redis

ENV_URL = "CQ_BENCH_METRICS_URL"
ENV_PREFIX = "CQ_BENCH_METRICS_PREFIX"

_client = (None, None)  # (pid, client): a fork gets a client of its own
_lock = threading.Lock()


class BenchTimeout(Exception):
    """The bench ran past its time limit."""


def client():
    global _client
    pid, current = _client
    if pid == os.getpid():
        return current
    with _lock:
        pid, current = _client
        if pid != os.getpid():
            current = redis.Redis.from_url(os.environ[ENV_URL])
            _client = (os.getpid(), current)
        return current


def key(name):
    return f"{os.environ.get(ENV_PREFIX, 'cqbench:')}{name}"


def mark_done():
    now = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.incr(key("done"))
    pipe.setnx(key("first"), now)
    pipe.set(key("last"), now)
    pipe.execute()


def reset():
    client().delete(key("done"), key("first"), key("last"))


def done_count():
    return int(client().get(key("done")) or 0)


def last_done():
    value = client().get(key("last"))
    return None if value is None else float(value)


def wait_done(count, deadline, workers=()):
    """Poll every 5 ms until `count` completions; return (first, last) times."""
    while done_count() < count:
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchTimeout(f"only {done_count()}/{count} tasks completed in time")
        time.sleep(0.005)
    first, last = client().mget(key("first"), key("last"))
    return float(first), float(last)


class PrivateRedis:
    """A throw-away `redis-server` on a free loopback port, stopped by `stop()`."""

    def __init__(self, port=None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(
                "redis-server is not on PATH; give --metrics-redis URL "
                "(a Redis that is not the channel layer's)"
            )
        # A port given: a restart of a server that was stopped (outage bench).
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                binary,
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
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self):
        probe = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                probe.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
            finally:
                probe.close()
        self.stop()
        raise RuntimeError(f"private metrics redis-server did not start on port {self.port}")

    def kill(self):
        """Stop at once, as a crashed server: no shutdown, connections reset."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
