"""cq's doorbell wire format is channels-redis's own, both ways; every Redis
operation has a deadline; a bad member costs only itself."""

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings
from redis.exceptions import TimeoutError as RedisTimeoutError

from cq import transport
from tests.faults import RedisServer, TcpProxy
from tests.helpers import channel_layers


@pytest.fixture
def layer():
    return get_channel_layer()


def test_messages_cq_sends_are_read_by_channels_redis(layer):
    async def roundtrip():
        sent = transport.send_many_sync(layer, "cq-compat", [{"type": "run_task", "task_id": "a"}])
        return sent, await layer.receive("cq-compat")

    assert async_to_sync(roundtrip)() == (1, {"type": "run_task", "task_id": "a"})


def test_messages_channels_redis_sends_are_read_by_cq(layer):
    async def roundtrip():
        for n in range(3):
            await layer.send("cq-compat", {"type": "run_task", "task_id": str(n)})
        receiver = transport.Receiver(layer, "cq-compat")
        return await receiver.receive(2), await receiver.receive(2)

    first, second = async_to_sync(roundtrip)()
    assert [m["task_id"] for m in first] == ["0", "1"]
    assert [m["task_id"] for m in second] == ["2"]


def test_send_stops_at_the_channel_capacity(layer, settings):
    async def fill():
        messages = [{"type": "run_task", "task_id": str(n)} for n in range(layer.capacity + 5)]
        return transport.send_many_sync(layer, "cq-compat", messages)

    assert async_to_sync(fill)() == layer.capacity


def test_an_empty_channel_returns_nothing_after_the_block_time(layer):
    async def empty():
        return await transport.Receiver(layer, "cq-compat").receive(1, block=0.1)

    assert async_to_sync(empty)() == []


def test_an_undecodable_member_is_skipped_not_the_messages_popped_with_it(layer, redis_client):
    key = layer.prefix + "cq-compat"
    members = [
        layer.serialize({"type": "run_task", "task_id": "a"}),
        b"\xff garbage",
        layer.serialize({"type": "run_task", "task_id": "b"}),
    ]
    redis_client.zadd(key, {member: n for n, member in enumerate(members)})

    async def receive():
        return await transport.Receiver(layer, "cq-compat").receive(3)

    first, bad, last = async_to_sync(receive)()
    assert (first["task_id"], bad, last["task_id"]) == ("a", transport.UNDECODABLE, "b")


@pytest.fixture
def hung_redis():
    """A layer on a redis-server behind a proxy, with no socket timeout of its own."""
    server = RedisServer()
    server.start()
    proxy = TcpProxy(server.port)
    proxy.start()
    layers = channel_layers(address=f"redis://127.0.0.1:{proxy.port}/0")
    layers["default"]["CONFIG"]["hosts"][0]["socket_timeout"] = None
    try:
        with override_settings(CHANNEL_LAYERS=layers, CQ_REDIS_TIMEOUT=0.3):
            yield proxy
    finally:
        proxy.stop()
        server.stop()


def test_a_hung_connection_misses_its_deadline_and_is_replaced(hung_redis):
    layer = get_channel_layer()
    message = {"type": "run_task", "task_id": "a"}

    async def scenario():
        receiver = transport.Receiver(layer, "cq-compat")
        assert await receiver.receive(1, block=0.1) == []  # a pooled connection, now open
        hung_redis.freeze(new="work")
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="BZPOPMIN within 0.4s"):
            await receiver.receive(1, block=0.1)
        missed = time.monotonic() - started
        transport.send_many_sync(layer, "cq-compat", [message])
        return missed, await receiver.receive(1, block=0.1)

    async def bounded_scenario():
        # Without deadlines in cq the hung receive never returns: fail, don't hang.
        return await asyncio.wait_for(scenario(), 10)

    missed, received = async_to_sync(bounded_scenario)()
    assert missed < 1
    assert received == [message]
