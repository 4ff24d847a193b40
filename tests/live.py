"""Helpers of the live tests: listening to a tree's channel-layer group as a
browser's consumer would, from the test process."""

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

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


def application():
    """The WebSocket routing a project's asgi.py gets from docs/live.md."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    from cq.live import websocket_urlpatterns

    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def session_cookie(user):
    """The Cookie header of a browser where `user` has logged in."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def user_named_owner(user, task):
    """A CQ_LIVE_PERMISSION rule of the app's own: only the user "owner"."""
    return user.is_authenticated and user.username == "owner"


def make_user(username, staff=False, *permissions):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password="pw", is_staff=staff)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user
