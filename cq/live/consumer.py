"""The WebSocket side of cq.live: a browser watches a task tree, or the dashboard.

Route them with cq.live.websocket_urlpatterns (see docs/live.md):

    "websocket": AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter(cq.live.websocket_urlpatterns))
    ),

The consumers guard themselves whatever the routing: a handshake from a page
of another origin is refused (cq.live.origins), a watcher's right to watch is
checked again every CQ_LIVE_RECHECK_INTERVAL seconds, and nothing the browser
sends is read.

A watcher joins the tree's group and marks itself as watching (workers
publish only then: cq.live.watchers) before it reads the tree, so an event
sent between the page load and the subscription is never missed: it is
either in the first message (the current state) or arrives after it.
"""

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .. import logs
from ..conf import settings as cq_settings
from . import dashboard, origins, permissions, watchers
from .events import tree_group
from .state import snapshot

logger = logging.getLogger(__name__)

# WebSocket close code of a refused watcher (4000-4999: the application's own).
REFUSED = 4403
# Seconds between two reads of a watched tree's log lines for those a worker
# did not publish (it had not seen the watcher's mark yet).
CATCH_UP = 1.0
# Keys of sent log lines a watcher keeps: more than a read returns
# (cq.live.state.MOST_LOG_LINES), so that a line is never sent twice.
SENT_LINES = 1000
# Close code when the right to watch could not be checked (the database is
# down): the browser reconnects later and is judged again.
UNCHECKED = 1011


class LiveConsumer(AsyncJsonWebsocketConsumer):
    # The channel-layer group this connection is in, if any.
    group: str | None = None
    closed = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Tasks of this connection's own (a watcher's mark, the dashboard's
        # figures, the permission re-check).
        self.background: list[asyncio.Future] = []

    @property
    def channel_layer_alias(self):
        return cq_settings.CHANNEL_LAYER

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the connection ends (its disconnect, a handler's
            # exception, or the server cancelling this consumer, as an ASGI
            # server does with one slow to close), what it holds ends with it:
            # a watcher's mark left renewing would keep every worker
            # publishing for nobody, and a channel left in the tree's group
            # (channels-redis keeps it for group_expiry, a day) would be sent
            # every event of the tree.
            self.stop_background()
            await self.leave_group()

    async def websocket_connect(self, message):
        # Before the consumer's own connect, so that no consumer of cq.live
        # can forget it: the session cookie came with the handshake whatever
        # page made it.
        if not origins.allowed(self.scope):
            logger.warning(
                "live socket refused path=%s origin=%s (not in CQ_LIVE_ALLOWED_ORIGINS "
                "or ALLOWED_HOSTS)",
                self.scope.get("path"),
                origins.origin_header(self.scope),
            )
            await self.close(code=REFUSED)
            return
        await super().websocket_connect(message)

    async def websocket_receive(self, message):
        # The sockets are one-way, server to browser: a frame is not even
        # decoded (one that was not JSON crashed the consumer).
        pass

    async def send_json(self, content, close=False):
        # Events already queued for this channel may arrive after a close,
        # and an ASGI server may raise on a send after its close.
        if not self.closed:
            await super().send_json(content, close)

    async def close(self, code=None, reason=None):
        self.closed = True
        await super().close(code, reason)

    async def join(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def leave_group(self) -> None:
        group, self.group = self.group, None
        if group is None:
            return
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception:  # noqa: BLE001 - the connection is over either way
            logger.warning(
                "live socket could not leave group=%s channel=%s; channels-redis drops it "
                "after its group_expiry",
                group,
                self.channel_name,
                exc_info=True,
            )

    def start(self, coroutine) -> None:
        self.background.append(asyncio.ensure_future(coroutine))

    def stop_background(self):
        current = asyncio.current_task()
        for future in self.background:
            if future is not current:
                future.cancel()

    async def may_still_watch(self) -> bool:
        """Whether this connection's user may go on watching, judged now."""
        raise NotImplementedError

    async def rechecked(self) -> None:
        """Called after each re-check that let the user go on watching."""

    async def keep_checking(self):
        """Every CQ_LIVE_RECHECK_INTERVAL seconds, whether the user may still
        watch (logged out, no longer staff, the app's rule changed its mind):
        if not, the connection ends with REFUSED and nothing more is sent."""
        while True:
            await asyncio.sleep(cq_settings.LIVE_RECHECK_INTERVAL)
            try:
                allowed = await self.may_still_watch()
            except Exception:  # noqa: BLE001 - unchecked is not allowed: close, judge again later
                logger.warning(
                    "live socket re-check failed path=%s", self.scope.get("path"), exc_info=True
                )
                await self.end(UNCHECKED)
                return
            if not allowed:
                logger.info("live socket refused path=%s: may no longer watch", self.scope["path"])
                await self.end(REFUSED)
                return
            await self.rechecked()

    async def end(self, code: int) -> None:
        """Close from the server's side, at once: nothing more is sent, and the
        group is left before the browser hears of the close."""
        self.closed = True
        self.stop_background()
        await self.leave_group()
        await self.close(code=code)


class TaskConsumer(LiveConsumer):
    """Streams a task tree: first its current state, then each status change
    (as a new state), progress report and log line, as JSON messages of type
    "state", "progress" and "log"."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Keys of the log lines sent (the newest SENT_LINES), so that each is
        # sent once, whichever way it came; when the tree's lines were last
        # read, for catching up; and the last state sent.
        self.sent: dict[tuple, None] = {}
        self.caught_up = 0.0
        self.last_state: dict | None = None

    async def connect(self):
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.task_id = task_id
        top_id = await database_sync_to_async(_top_id_if_allowed)(self.scope.get("user"), task_id)
        if top_id is None:
            await self.close(code=REFUSED)
            return
        await self.join(tree_group(top_id))
        await self.accept()
        self.start(_keep_marked())
        self.start(self.keep_checking())
        # Workers publish once they see a watcher's mark: what they drop
        # before that happened before this read, so it is in the state. What
        # a worker slower than SETTLE to see the mark (a loaded machine)
        # drops after the read, the re-reads below make up for.
        await asyncio.sleep(watchers.SETTLE)
        await self._send_state(first=True)

    async def may_still_watch(self) -> bool:
        return await database_sync_to_async(_may_still_watch)(self.scope, self.task_id)

    async def rechecked(self) -> None:
        # The tree read again with each re-check, and sent if it changed: an
        # event a worker dropped (it had not seen the mark yet) or that the
        # channel layer lost (a full channel drops a group message) is made up
        # for within CQ_LIVE_RECHECK_INTERVAL.
        await self._send_state(refresh=True)

    async def cq_task(self, event):
        # The event names the task that changed; the watched one's state
        # (its counts, its share done) may have changed with it.
        await self._send_state()

    async def cq_progress(self, event):
        await self.send_json(
            {"type": "progress", "task_id": event["task_id"], "progress": event["progress"]}
        )

    async def cq_log(self, event):
        # A line logged just before the first state was read is in its `logs`
        # and may also arrive here, its event queued meanwhile: send it once.
        lines = self._unsent(event["lines"])
        if lines:
            await self.send_json({"type": "log", "lines": lines})

    async def _send_state(self, first=False, refresh=False):
        """The watched task's state; before it, the tree's log lines not sent
        yet, read at most every CATCH_UP seconds and always once the task is
        done: a watcher that stops at the final state has every line. With
        `refresh`, the state is sent only if it changed since the last one."""
        catch_up = first or refresh or time.monotonic() - self.caught_up >= CATCH_UP
        state = await database_sync_to_async(_snapshot)(
            self.task_id, with_logs=catch_up, logs_when_done=True
        )
        if state is None:
            return
        lines = []
        if "logs" in state:
            self.caught_up = time.monotonic()
            lines = self._unsent(state.pop("logs"))
        if lines and not first:
            await self.send_json({"type": "log", "lines": lines})
        if refresh and state == self.last_state:
            return
        self.last_state = dict(state)
        if first:
            state["logs"] = lines
        await self.send_json({"type": "state", **state})

    def _unsent(self, lines):
        """Those of `lines` not sent yet, now counted as sent."""
        fresh = []
        for line in lines:
            key = logs.line_key(line)
            if key not in self.sent:
                self.sent[key] = None
                fresh.append(line)
        for key in list(self.sent)[: max(0, len(self.sent) - SENT_LINES)]:
            del self.sent[key]
        return fresh


class DashboardConsumer(LiveConsumer):
    """Streams the dashboard's figures (cq.live.dashboard) every
    CQ_DASHBOARD_INTERVAL seconds, to staff users who may view tasks."""

    async def connect(self):
        user = self.scope.get("user")
        if not await database_sync_to_async(dashboard.may_view)(user):
            await self.close(code=REFUSED)
            return
        await self.accept()
        self.start(self._send_figures())
        self.start(self.keep_checking())

    async def may_still_watch(self) -> bool:
        return await database_sync_to_async(_may_still_view_dashboard)(self.scope)

    async def _send_figures(self):
        while True:
            figures = await database_sync_to_async(dashboard.figures)()
            await self.send_json({"type": "dashboard", **figures})
            await asyncio.sleep(cq_settings.DASHBOARD_INTERVAL)


async def _keep_marked():
    while True:
        await database_sync_to_async(watchers.mark)()
        await asyncio.sleep(watchers.RENEW)


def _top_id_if_allowed(user, task_id):
    from ..models import Task

    task = Task.objects.filter(pk=task_id).first()
    if task is None or not permissions.may_watch(user, task):
        return None
    return task.top_id


def _may_still_watch(scope, task_id):
    return _top_id_if_allowed(permissions.current_user(scope), task_id) is not None


def _may_still_view_dashboard(scope):
    return dashboard.may_view(permissions.current_user(scope))


def _snapshot(task_id, with_logs, logs_when_done=False):
    from ..models import Task

    return snapshot(Task, task_id, with_logs, logs_when_done)
