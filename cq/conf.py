"""cq's settings, read lazily from Django settings so `override_settings` works.

Every setting is `CQ_<NAME>` in the project's settings; the defaults live here.
"""

from django.conf import settings as django_settings

DEFAULTS = {
    # Alias in CHANNEL_LAYERS that carries the doorbells.
    "CHANNEL_LAYER": "default",
    # The channel the workers listen on (`runworker cq-tasks`).
    "CHANNEL": "cq-tasks",
    # Run `.delay()` inline, in the caller's process (tests, scripts).
    "SERIAL": False,
    # Seconds a finished task's row is kept before the clean-up task may delete it
    # (None keeps it forever).
    "RESULT_TTL": 7 * 24 * 3600,
    # Cache alias that buffers task logs while a task tree runs.
    "CACHE": "default",
    # Most log lines stored on a top-level task; the oldest are dropped first.
    "MAX_LOG_LINES": 1000,
    # Seconds between a worker's housekeeping rounds (feeder, due tasks, cron, sweeper).
    "HOUSEKEEPING_INTERVAL": 1.0,
    # Seconds between two heartbeats of a worker (sent from a thread of their own).
    "HEARTBEAT_INTERVAL": 5.0,
    # Seconds without a heartbeat after which a worker is presumed dead and its
    # RUNNING tasks are requeued or marked LOST. Keep it several heartbeats long.
    "WORKER_TIMEOUT": 30.0,
    # Seconds a QUEUED task may wait with no doorbell in the channel before the
    # feeder rings it again (lost message, ChannelFull, Redis restarted empty).
    "REQUEUE_AFTER": 10.0,
    # Seconds cq waits for Redis to answer one operation on the channel layer
    # (a blocking pop: its block time plus this). A half-open connection (a
    # crashed host, a partition) otherwise hangs until TCP keepalive gives up,
    # hours later; on the deadline the connection is dropped and replaced.
    "REDIS_TIMEOUT": 5.0,
    # Seconds between two claims from the table by a worker whose channel
    # layer is unreachable (no doorbell can ring), jittered by ±25 % so that a
    # fleet's claims spread out; None: no polling, tasks wait for Redis.
    "OUTAGE_POLL_INTERVAL": 1.0,
    # Seconds the outcomes of quick atomic tasks may wait to be committed
    # together (one transaction, one statement for several; 0 turns grouping
    # off). A worker groups only tasks that its recent runs show to be quick.
    "GROUP_COMMIT_WINDOW": 0.005,
    # Most tasks in one group.
    "GROUP_MAX": 32,
    # Seconds a task may run before it is stopped and fails with
    # TimeLimitExceeded, for tasks without a `time_limit` of their own (None:
    # no limit). A time-limited task runs in a child process (cq.time_limits).
    "DEFAULT_TIME_LIMIT": None,
    # Whether `runworker cq-tasks` runs the cron scheduler tick by default.
    "SCHEDULER": True,
    # Publish status changes, progress and log lines to channel-layer groups,
    # for the browsers that watch a task (cq.live). Off: nothing is sent.
    "LIVE": True,
    # Seconds between two stored (and published) progress reports of one task:
    # `cqt.progress()` in a tight loop costs one write per interval, not per call.
    "PROGRESS_INTERVAL": 0.5,
    # Dotted path of `fn(user, task) -> bool`, who may watch a task live (and
    # see it on app pages); empty: active staff users with the view permission.
    "LIVE_PERMISSION": "",
    # Origins whose pages may open cq.live's WebSockets ("https://shop.example.com",
    # or host patterns as in ALLOWED_HOSTS; "*": any); None: the hosts in
    # ALLOWED_HOSTS. A browser sends the session cookie with a handshake from
    # other sites too: the Origin is what tells them apart.
    "LIVE_ALLOWED_ORIGINS": None,
    # Seconds between two checks that a connected watcher may still watch (still
    # logged in, still staff, CQ_LIVE_PERMISSION still agrees); one who may not
    # is disconnected with close code 4403.
    "LIVE_RECHECK_INTERVAL": 5.0,
    # Seconds between two updates of the admin's dashboard, pushed over its WebSocket.
    "DASHBOARD_INTERVAL": 2.0,
}


class Settings:
    def __getattr__(self, name):
        if name not in DEFAULTS:
            raise AttributeError(f"cq has no setting {name!r}")
        return getattr(django_settings, f"CQ_{name}", DEFAULTS[name])


settings = Settings()
