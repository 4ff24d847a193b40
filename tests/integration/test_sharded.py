"""A channel layer with two hosts (shards): cq reads, counts and fills every
one of them (two private redis-servers, this process)."""

import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from cq import channel, feeder, transport
from cq.models import Task
from tests.app import tasks
from tests.helpers import channel_key

pytestmark = pytest.mark.django_db(transaction=True)

LATER = timedelta(seconds=11)  # past the default CQ_REQUEUE_AFTER of 10 s


class IdleWorker:
    idle = True
    queues = ["default"]


def ring_on(client, layer, task_ids):
    """Doorbells for `task_ids` on one shard, written by hand."""
    now = time.time()
    client.zadd(
        channel_key(),
        {
            layer.serialize({"type": "run_task", "task_id": str(pk)}): now + n / 1000
            for n, pk in enumerate(task_ids)
        },
    )


def queued(count, now):
    return Task.objects.bulk_create(
        Task(func_name=tasks.add.name, args=[n, n], status=Task.STATUS_QUEUED, submitted=now)
        for n in range(count)
    )


def test_inspect_counts_the_doorbells_and_capacity_of_every_shard(two_shards):
    layer = get_channel_layer()
    first, second = two_shards.clients
    ring_on(first, layer, ["a", "b"])
    ring_on(second, layer, ["c"])

    state = channel.inspect()

    assert state.depth == 3
    assert state.task_ids == {"a", "b", "c"}
    assert state.capacity == 2 * layer.get_capacity("cq-tasks")


def test_feeder_does_not_ring_again_a_row_whose_doorbell_is_on_the_second_shard(two_shards):
    layer = get_channel_layer()
    now = timezone.now()
    on_second, without = queued(2, now)
    ring_on(two_shards.clients[1], layer, [on_second.pk])

    assert feeder.feed(IdleWorker(), now + LATER) == [without.pk]
    assert channel.inspect().task_ids == {str(on_second.pk), str(without.pk)}
    assert sum(client.zcard(channel_key()) for client in two_shards.clients) == 2


def test_a_send_that_finds_one_shard_full_fills_the_other(two_shards):
    layer = get_channel_layer()
    capacity = layer.get_capacity("cq-tasks")
    full, other = two_shards.clients
    ring_on(full, layer, [f"old {n}" for n in range(capacity)])
    # The first host is picked at random: every round must land whatever it picks.
    for round_ in range(5):
        messages = [{"type": "run_task", "task_id": f"{round_} {n}"} for n in range(capacity)]
        assert transport.send_many_sync(layer, "cq-tasks", messages) == capacity
        assert (full.zcard(channel_key()), other.zcard(channel_key())) == (capacity, capacity)
        other.delete(channel_key())


def test_receiver_pops_the_doorbells_of_every_shard(two_shards):
    layer = get_channel_layer()
    first, second = two_shards.clients
    ring_on(first, layer, ["a"])
    ring_on(second, layer, ["b"])

    async def receive_all():
        receiver = transport.Receiver(layer, "cq-tasks")
        popped = []
        for _ in range(4):
            popped += await receiver.receive(10, block=0.1)
        return popped

    assert sorted(m["task_id"] for m in async_to_sync(receive_all)()) == ["a", "b"]
    assert first.zcard(channel_key()) == second.zcard(channel_key()) == 0
