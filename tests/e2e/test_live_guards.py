"""cq.live's consumers guard themselves, routed as docs/live.md says but
without channels' AllowedHostsOriginValidator: a handshake from another
site's page is refused, a watcher who may no longer watch is disconnected
within CQ_LIVE_RECHECK_INTERVAL, a frame that is not JSON is ignored, and the
tree's group is left however the connection ends.

The consumers run in this process (WebsocketCommunicator) on real Redis and a
real database with real sessions; no worker is needed, the events are sent to
the tree's group as a worker's outbox sends them. Every receive has a timeout."""

import asyncio
import contextlib
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import override_settings

from cq.live.consumer import REFUSED, UNCHECKED
from cq.live.events import tree_group
from tests.app import tasks
from tests.helpers import wait_until
from tests.live import (
    BREAK_RULE,
    application,
    cookie_of,
    group_members,
    logged_in,
    make_user,
    run_async,
    session_cookie,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASK = "task"
DASHBOARD = "dashboard"
# Seconds a test waits for something the consumer does at once, or within
# one re-check: far above the 0.5 s the tests set, for a machine shared by
# many test runs.
DEADLINE = 30


def communicator(path, headers):
    return WebsocketCommunicator(application(), path, headers=headers)


def path_of(consumer, task):
    return f"/cq/live/tasks/{task.pk}/" if consumer == TASK else "/cq/live/dashboard/"


def with_origin(headers, origin):
    return headers + [(b"origin", origin.encode())] if origin is not None else headers


async def handshake(path, headers):
    socket = communicator(path, headers)
    connected, code = await socket.connect(timeout=DEADLINE)
    if connected:
        await socket.disconnect()
    return connected, code


def log_event(message):
    return {"type": "cq.log", "lines": [{"timestamp": None, "origin": "t", "message": message}]}


async def receive_log(socket, message):
    """Receive until the log line `message` arrives: the connection goes on."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        output = await socket.receive_json_from(timeout=DEADLINE)
        lines = output.get("lines", []) if output["type"] == "log" else []
        if any(line["message"] == message for line in lines):
            return
    raise AssertionError(f"log line {message!r} never arrived")


# ---- origins


@pytest.mark.parametrize("consumer", [TASK, DASHBOARD])
@pytest.mark.parametrize(
    "origin, accepted",
    [
        ("https://shop.example.com", True),
        ("https://evil.example", False),
        ("https://admin.example.com", False),  # a sibling subdomain: same-site
        ("null", False),  # a sandboxed frame's
        (None, False),  # no Origin: not a browser's handshake
    ],
)
@override_settings(ALLOWED_HOSTS=["shop.example.com"])
def test_a_handshake_from_a_page_of_a_host_not_allowed_is_refused(consumer, origin, accepted):
    task = tasks.add.delay(1, 2)
    headers = with_origin(session_cookie(make_user("operator", True, "view_task")), origin)

    connected, code = run_async(handshake, path_of(consumer, task), headers)

    assert (connected, code) == ((True, None) if accepted else (False, REFUSED))


@pytest.mark.parametrize("consumer", [TASK, DASHBOARD])
@pytest.mark.parametrize(
    "origin, accepted",
    [
        ("https://app.example.com", True),
        ("http://app.example.com", False),  # the pattern names the scheme
        ("https://evil.example.com", False),  # ALLOWED_HOSTS would let it in
    ],
)
@override_settings(
    ALLOWED_HOSTS=[".example.com"], CQ_LIVE_ALLOWED_ORIGINS=["https://app.example.com"]
)
def test_cq_live_allowed_origins_decides_instead_of_allowed_hosts(consumer, origin, accepted):
    task = tasks.add.delay(1, 2)
    headers = with_origin(session_cookie(make_user("operator", True, "view_task")), origin)

    connected, code = run_async(handshake, path_of(consumer, task), headers)

    assert (connected, code) == ((True, None) if accepted else (False, REFUSED))


# ---- the right to watch, checked again


def revoke_as(how, user, client):
    if how == "logged out":
        client.logout()
    elif how == "no longer staff":
        User.objects.filter(pk=user.pk).update(is_staff=False)
    else:  # "password changed": the session's auth hash no longer matches
        user.set_password("changed")
        user.save()


async def watch_until_closed(socket, group):
    """Send the tree's group an event every half second, as a busy tree's
    workers would, until the consumer closes the socket; the close code."""
    layer = get_channel_layer()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        await layer.group_send(group, log_event("still here"))
        # Not receive_output(short timeout): on its timeout the communicator
        # cancels the consumer.
        while not await socket.receive_nothing(timeout=0.5):
            output = await socket.receive_output(timeout=DEADLINE)
            if output["type"] == "websocket.close":
                return output.get("code")
    raise AssertionError(f"the socket was not closed within {DEADLINE}s")


@pytest.mark.parametrize("how", ["logged out", "no longer staff", "password changed"])
@override_settings(CQ_LIVE_RECHECK_INTERVAL=0.5)
def test_a_watcher_who_may_no_longer_watch_is_disconnected(how):
    operator = make_user("operator", True, "view_task")
    client = logged_in(operator)
    task = tasks.add.delay(1, 2)
    group = tree_group(task.pk)

    async def session():
        socket = communicator(path_of(TASK, task), cookie_of(client))
        assert (await socket.connect(timeout=DEADLINE))[0]
        first = await socket.receive_json_from(timeout=DEADLINE)
        assert first["type"] == "state"
        await sync_to_async(revoke_as)(how, operator, client)
        code = await watch_until_closed(socket, group)
        members = await sync_to_async(group_members)(group)
        await socket.disconnect()
        return code, members

    code, members = run_async(session)

    assert code == REFUSED
    assert members == set(), "closed, the consumer leaves the tree's group at once"


@override_settings(CQ_LIVE_RECHECK_INTERVAL=0.5, CQ_LIVE_PERMISSION="tests.live.rule_that_breaks")
def test_a_watcher_whose_right_cannot_be_checked_is_disconnected_to_reconnect():
    # Unchecked is not allowed; 1011, not 4403, so that the browser comes
    # back and is judged again.
    client = logged_in(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)
    group = tree_group(task.pk)

    async def session():
        socket = communicator(path_of(TASK, task), cookie_of(client))
        assert (await socket.connect(timeout=DEADLINE))[0]
        await socket.receive_json_from(timeout=DEADLINE)
        cache.set(BREAK_RULE, True, 60)
        code = await watch_until_closed(socket, group)
        members = await sync_to_async(group_members)(group)
        await socket.disconnect()
        return code, members

    try:
        assert run_async(session) == (UNCHECKED, set())
    finally:
        cache.delete(BREAK_RULE)


@pytest.mark.parametrize("how", ["logged out", "no longer staff"])
@override_settings(CQ_LIVE_RECHECK_INTERVAL=0.5)
def test_the_dashboard_of_a_user_who_may_no_longer_view_it_is_closed(how):
    operator = make_user("operator", True, "view_task")
    client = logged_in(operator)

    async def session():
        socket = communicator(path_of(DASHBOARD, None), cookie_of(client))
        assert (await socket.connect(timeout=DEADLINE))[0]
        assert (await socket.receive_json_from(timeout=DEADLINE))["type"] == "dashboard"
        await sync_to_async(revoke_as)(how, operator, client)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            output = await socket.receive_output(timeout=DEADLINE)
            if output["type"] == "websocket.close":
                await socket.disconnect()
                return output.get("code")
        raise AssertionError("the dashboard went on")

    assert run_async(session) == REFUSED


@override_settings(CQ_LIVE_RECHECK_INTERVAL=0.2)
def test_a_watcher_who_may_still_watch_stays_connected_across_rechecks():
    # The other side of the re-check: a session that is still good reads as
    # the same user, not as an anonymous one.
    client = logged_in(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)

    async def session():
        socket = communicator(path_of(TASK, task), cookie_of(client))
        assert (await socket.connect(timeout=DEADLINE))[0]
        await socket.receive_json_from(timeout=DEADLINE)
        layer = get_channel_layer()
        # Ten re-checks' worth (2 s at 0.2 s): a negative can only be watched
        # for a while; a wrong re-check refuses at the first one.
        for n in range(10):
            await asyncio.sleep(0.2)
            await layer.group_send(tree_group(task.pk), log_event(f"line {n}"))
            await receive_log(socket, f"line {n}")
        await socket.disconnect()

    run_async(session)


# ---- frames, and the group left however the connection ends


def test_a_frame_that_is_not_json_is_ignored_and_the_watcher_goes_on():
    headers = session_cookie(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)
    group = tree_group(task.pk)

    async def session():
        socket = communicator(path_of(TASK, task), headers)
        assert (await socket.connect(timeout=DEADLINE))[0]
        await socket.receive_json_from(timeout=DEADLINE)
        await socket.send_to(text_data="{")
        await socket.send_to(bytes_data=b"\x00\xff")
        await socket.send_to(text_data='{"type": "state"}')
        await get_channel_layer().group_send(group, log_event("after the bad frames"))
        await receive_log(socket, "after the bad frames")
        await socket.disconnect()
        return await sync_to_async(group_members)(group)

    assert run_async(session) == set()


async def cancel(socket, channel):
    # As an ASGI server does with a consumer slow to close.
    socket.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await socket.future


async def crash(socket, channel):
    # A handler that raises (here: an event no handler exists for).
    await get_channel_layer().send(channel, {"type": "cq.unheard.of"})
    with contextlib.suppress(ValueError):
        await asyncio.wait_for(socket.future, DEADLINE)


@pytest.mark.parametrize("end", [cancel, crash], ids=["cancelled", "crashed"])
def test_the_trees_group_is_left_however_the_connection_ends(end):
    headers = session_cookie(make_user("operator", True, "view_task"))
    task = tasks.add.delay(1, 2)
    group = tree_group(task.pk)

    async def session():
        socket = communicator(path_of(TASK, task), headers)
        assert (await socket.connect(timeout=DEADLINE))[0]
        await socket.receive_json_from(timeout=DEADLINE)
        joined = await sync_to_async(group_members)(group)
        assert len(joined) == 1
        await end(socket, *joined)
        return joined

    run_async(session)

    wait_until(lambda: group_members(group) == set(), timeout=DEADLINE, message="group left")
