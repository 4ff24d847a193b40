"""The channels-redis internals cq relies on, asserted one by one.

cq reads and writes channels-redis' own keys (cq/transport.py, cq/channel.py),
which are not its public API: 2.x kept a channel as a list, 3.x+ as a sorted
set. `make test-contract` runs this file against the oldest and the newest
channels-redis that setup.py allows, so an upgrade that breaks cq fails here,
not in production. Keep it to exactly what cq uses.
"""

import time

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from cq import transport

CHANNEL = "cq-contract"
MESSAGE = {"type": "run_task", "task_id": "6f1c0000-0000-0000-0000-000000000001"}


@pytest.fixture
def layer():
    layer = get_channel_layer()
    assert transport.is_redis(layer), "the suite's layer is channels-redis"
    return layer


def test_a_channel_is_a_sorted_set_at_prefix_plus_name_scored_by_send_time(layer, redis_client):
    before = time.time()
    async_to_sync(layer.send)(CHANNEL, MESSAGE)
    key = layer.prefix + CHANNEL

    assert redis_client.type(key) == b"zset"
    [(member, score)] = redis_client.zrange(key, 0, -1, withscores=True)
    assert before - 1 <= score <= time.time() + 1
    assert 0 < redis_client.ttl(key) <= layer.expiry
    assert layer.deserialize(member) == MESSAGE


def test_serialize_and_deserialize_round_trip_with_unique_members(layer):
    first, second = layer.serialize(MESSAGE), layer.serialize(MESSAGE)
    assert isinstance(first, bytes)
    # Sorted-set members must differ for equal messages, or one would replace the other.
    assert first != second
    assert layer.deserialize(first) == layer.deserialize(second) == MESSAGE


def test_messages_sent_by_channels_redis_are_received_by_cq(layer):
    async def roundtrip():
        for n in range(3):
            await layer.send(CHANNEL, {**MESSAGE, "n": n})
        receiver = transport.Receiver(layer, CHANNEL)
        return await receiver.receive(2), await receiver.receive(2, block=0.1)

    first, second = async_to_sync(roundtrip)()
    assert [m["n"] for m in first + second] == [0, 1, 2]


def test_messages_sent_by_cq_are_received_by_channels_redis(layer):
    async def roundtrip():
        sent = transport.send_many_sync(layer, CHANNEL, [MESSAGE, {**MESSAGE, "n": 1}])
        return sent, [await layer.receive(CHANNEL), await layer.receive(CHANNEL)]

    # One batch shares one score: its order within it is not kept, its content is.
    sent, received = async_to_sync(roundtrip)()
    assert (sent, sorted(m.get("n", 0) for m in received)) == (2, [0, 1])
    assert {m["task_id"] for m in received} == {MESSAGE["task_id"]}


def test_connection_by_index_over_ring_size_hosts(layer):
    assert layer.ring_size == len(layer.hosts) >= 1

    async def use():
        client = layer.connection(layer.ring_size - 1)
        assert await client.ping()
        with pytest.raises(ValueError):
            layer.connection(layer.ring_size)

    async_to_sync(use)()


def test_hosts_are_decoded_to_redis_client_options(layer):
    # cq.transport builds its synchronous clients (doorbell sender, channel
    # inspection) from these dicts.
    [host] = layer.hosts
    assert isinstance(host, dict) and host["address"].startswith("redis://")
    assert transport._sync_client(host).ping()


def test_capacity_per_channel_is_the_same_for_both_senders():
    layer = RedisChannelLayer(
        hosts=get_channel_layer().hosts,
        prefix=get_channel_layer().prefix,
        capacity=3,
        channel_capacity={CHANNEL: 2},
    )
    assert (layer.get_capacity(CHANNEL), layer.get_capacity("other")) == (2, 3)

    async def fill():
        sent = transport.send_many_sync(layer, CHANNEL, [MESSAGE] * 5)
        with pytest.raises(ChannelFull):
            await layer.send(CHANNEL, MESSAGE)
        return sent

    assert async_to_sync(fill)() == 2


def test_messages_older_than_expiry_are_dropped_at_the_next_send(layer, redis_client):
    # cq.channel counts as live only members scored after now - expiry.
    key = layer.prefix + CHANNEL
    redis_client.zadd(key, {layer.serialize(MESSAGE): time.time() - layer.expiry - 5})
    async_to_sync(layer.send)(CHANNEL, {**MESSAGE, "n": 1})
    [member] = redis_client.zrange(key, 0, -1)
    assert layer.deserialize(member)["n"] == 1


def test_the_receive_backup_set_is_named_with_the_inflight_suffix(layer):
    # cq.channel reads prefix + channel + "$inflight" for doorbells being received.
    backup = layer._backup_channel_name(layer.prefix + CHANNEL)
    assert backup == layer.prefix + CHANNEL + "$inflight"
