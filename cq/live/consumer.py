"""The WebSocket side of cq.live: a browser watches a task tree, or the dashboard.

Route them with cq.live.websocket_urlpatterns (see docs/live.md):

    "websocket": AuthMiddlewareStack(URLRouter(cq.live.websocket_urlpatterns)),

A watcher joins the tree's group and marks itself as watching (workers
publish only then: cq.live.watchers) before it reads the tree, so an event
sent between the page load and the subscription is never missed: it is
either in the first message (the current state) or arrives after it.
"""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ..conf import settings as cq_settings
from . import dashboard, permissions, watchers
from .events import tree_group
from .state import snapshot

# WebSocket close code of a refused watcher (4000-4999: the application's own).
REFUSED = 4403


class LiveConsumer(AsyncJsonWebsocketConsumer):
    # A task of this connection's own (a watcher's mark, the dashboard's figures).
    background: asyncio.Future | None = None

    @property
    def channel_layer_alias(self):
        return cq_settings.CHANNEL_LAYER

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the connection ends (its disconnect, or the server
            # cancelling this consumer, as an ASGI server does with one slow to
            # close), its background task ends with it: a watcher's mark left
            # renewing would keep every worker publishing for nobody.
            self.stop_background()

    def stop_background(self):
        if self.background is not None:
            self.background.cancel()


class TaskConsumer(LiveConsumer):
    """Streams a task tree: first its current state, then each status change
    (as a new state), progress report and log line, as JSON messages of type
    "state", "progress" and "log"."""

    group = None
    lines_in_state: frozenset[str] = frozenset()

    async def connect(self):
        task_id = self.scope["url_route"]["kwargs"]["task_id"]
        self.task_id = task_id
        top_id = await database_sync_to_async(_top_id_if_allowed)(self.scope.get("user"), task_id)
        if top_id is None:
            await self.close(code=REFUSED)
            return
        self.group = tree_group(top_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.background = asyncio.ensure_future(_keep_marked())
        # Workers publish once they see a watcher's mark: what they drop
        # before that happened before this read, so it is in the state.
        await asyncio.sleep(watchers.SETTLE)
        await self._send_state(with_logs=True)

    async def disconnect(self, code):
        self.stop_background()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

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
        lines = [line for line in event["lines"] if _line_key(line) not in self.lines_in_state]
        if lines:
            await self.send_json({"type": "log", "lines": lines})

    async def _send_state(self, with_logs=False):
        state = await database_sync_to_async(_snapshot)(self.task_id, with_logs)
        if state is not None:
            if with_logs:
                self.lines_in_state = {_line_key(line) for line in state["logs"]}
            await self.send_json({"type": "state", **state})


class DashboardConsumer(LiveConsumer):
    """Streams the dashboard's figures (cq.live.dashboard) every
    CQ_DASHBOARD_INTERVAL seconds, to staff users who may view tasks."""

    async def connect(self):
        user = self.scope.get("user")
        if not await database_sync_to_async(dashboard.may_view)(user):
            await self.close(code=REFUSED)
            return
        await self.accept()
        self.background = asyncio.ensure_future(self._send_figures())

    async def disconnect(self, code):
        self.stop_background()

    async def _send_figures(self):
        while True:
            figures = await database_sync_to_async(dashboard.figures)()
            await self.send_json({"type": "dashboard", **figures})
            await asyncio.sleep(cq_settings.DASHBOARD_INTERVAL)


def _line_key(line):
    return (line.get("timestamp"), line.get("origin"), line.get("message"))


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


def _snapshot(task_id, with_logs):
    from ..models import Task

    return snapshot(Task, task_id, with_logs)
