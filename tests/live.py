"""Helpers of the live tests: listening to a tree's channel-layer group as a
browser's consumer would, from the test process."""

import asyncio
import threading
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from cq.live import watchers
from cq.live.events import tree_group


class GroupListener:
    """Collects every event sent to a tree's group, from `async with` on. It
    marks itself as a watcher, as TaskConsumer does, unless `mark=False`."""

    def __init__(self, top_id, mark=True):
        self.group = tree_group(top_id)
        self.events = []
        self.layer = get_channel_layer()
        self.mark = mark

    async def __aenter__(self):
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        if self.mark:
            await sync_to_async(watchers.mark)()
            await asyncio.sleep(watchers.SETTLE)  # the workers see the mark
        return self

    async def __aexit__(self, *exc):
        await self.layer.group_discard(self.group, self.channel)

    async def collect_until(self, predicate, timeout=30.0):
        """Receive events until `predicate(events)` holds; the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {self.events}")
            try:
                event = await asyncio.wait_for(self.layer.receive(self.channel), min(left, 1))
            except TimeoutError:
                continue
            self.events.append(event)
        return self.events

    def of_type(self, kind):
        return [event for event in self.events if event["type"] == kind]


_loop = None
_loop_lock = threading.Lock()


def run_async(coroutine_function, *args, timeout=180):
    """Run `coroutine_function(*args)` on the live tests' one event loop, a
    thread of its own that lives as long as the test process; its result.

    Not async_to_sync: that makes an event loop per call and, at its end,
    cancels and awaits what is left on it. A refused consumer leaves its
    channel-layer receive running (channels' consumer starts it before it
    handles the connect), and that receive, cancelled while it had just
    started on the closing loop, was seen to stay pending on a Redis read:
    the loop's teardown, and with it the test run, waited forever. Here a
    leftover receive just blocks on its own channel, on a loop that never
    closes, until the process ends."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="live-tests", daemon=True).start()
    future = asyncio.run_coroutine_threadsafe(_closing(coroutine_function(*args)), _loop)
    return future.result(timeout)


async def _closing(coroutine):
    try:
        return await coroutine
    finally:
        # The consumer's queries ran on asgiref's one thread for sync code:
        # close its connections, or the test database cannot be dropped.
        await sync_to_async(connections.close_all)()


def application():
    """The WebSocket routing a project's asgi.py gets from docs/live.md."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    from cq.live import websocket_urlpatterns

    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def session_cookie(user):
    """The Cookie header of a browser where `user` has logged in."""
    return cookie_of(logged_in(user))


def logged_in(user):
    """A browser (a test Client) where `user` has logged in; its logout() ends
    the session its WebSockets were opened with."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def cookie_of(client):
    """The Cookie header `client`'s WebSocket handshakes carry."""
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def group_members(group):
    """The channels in a channel-layer group, as channels-redis stores them."""
    import redis
    from django.conf import settings

    layer = get_channel_layer()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return {member.decode() for member in client.zrange(layer._group_key(group), 0, -1)}
    finally:
        client.close()


def user_named_owner(user, task):
    """A CQ_LIVE_PERMISSION rule of the app's own: only the user "owner"."""
    return user.is_authenticated and user.username == "owner"


# Set in the cache, tells rule_that_breaks to raise.
BREAK_RULE = "cq-test-live-rule-broken"


def rule_that_breaks(user, task):
    """A CQ_LIVE_PERMISSION rule that fails (a database down) once BREAK_RULE is set."""
    from django.core.cache import cache

    from cq.live.permissions import staff_with_view_permission

    if cache.get(BREAK_RULE):
        raise RuntimeError("the rule's database is down")
    return staff_with_view_permission(user, task)


def make_user(username, staff=False, *permissions):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password="pw", is_staff=staff)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user
