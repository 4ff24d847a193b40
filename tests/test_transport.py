"""cq's doorbell wire format is channels-redis's own, both ways."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from cq import transport


@pytest.fixture
def layer():
    return get_channel_layer()


def test_messages_cq_sends_are_read_by_channels_redis(layer):
    async def roundtrip():
        sent = await transport.send_many(layer, "cq-compat", [{"type": "run_task", "task_id": "a"}])
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
        return await transport.send_many(layer, "cq-compat", messages)

    assert async_to_sync(fill)() == layer.capacity


def test_an_empty_channel_returns_nothing_after_the_block_time(layer):
    async def empty():
        return await transport.Receiver(layer, "cq-compat").receive(1, block=0.1)

    assert async_to_sync(empty)() == []
