"""The feeder rings QUEUED rows that have no doorbell, within the channel's room
(real Redis, this process, time passed in)."""

from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings
from django.utils import timezone

from cq import channel, feeder
from cq.doorbell import doorbell
from cq.models import Task
from tests.app import tasks
from tests.faults import free_port
from tests.helpers import channel_key, channel_layers

pytestmark = pytest.mark.django_db(transaction=True)

LATER = timedelta(seconds=11)  # past the default CQ_REQUEUE_AFTER of 10 s


class IdleWorker:
    idle = True
    queues = ["default"]


def queued_without_doorbell(count, now):
    return Task.objects.bulk_create(
        Task(
            func_name=tasks.add.name,
            args=[n, n],
            status=Task.STATUS_QUEUED,
            submitted=now - timedelta(milliseconds=count - n),
        )
        for n in range(count)
    )


def test_row_without_doorbell_is_rung_once_it_waited_requeue_after():
    now = timezone.now()
    [task] = queued_without_doorbell(1, now)
    assert feeder.feed(IdleWorker(), now) == []
    assert feeder.feed(IdleWorker(), now + LATER) == [task.pk]
    assert channel.inspect().task_ids == {str(task.pk)}


def test_row_whose_doorbell_waits_in_the_channel_is_not_rung_again(redis_client):
    task = tasks.add.delay(1, 2)
    doorbell.flush()
    assert feeder.feed(IdleWorker(), timezone.now() + LATER) == []
    assert redis_client.zcard(channel_key()) == 1
    assert channel.inspect().task_ids == {str(task.pk)}


@override_settings(CHANNEL_LAYERS=channel_layers(capacity=10))
def test_backlog_is_fed_oldest_first_within_the_channel_room(redis_client):
    now = timezone.now()
    rows = queued_without_doorbell(25, now)
    assert feeder.feed(IdleWorker(), now + LATER) == [row.pk for row in rows[:10]]
    assert redis_client.zcard(channel_key()) == 10
    assert feeder.feed(IdleWorker(), now + LATER) == []
    # Workers take 4 doorbells and run their tasks.
    taken = [
        get_channel_layer().deserialize(member)["task_id"]
        for member, _ in redis_client.zpopmin(channel_key(), 4)
    ]
    Task.objects.filter(pk__in=taken).update(status=Task.STATUS_SUCCESS)
    assert feeder.feed(IdleWorker(), now + LATER) == [row.pk for row in rows[10:14]]
    assert redis_client.zcard(channel_key()) == 10


def test_expired_doorbell_counts_as_gone_and_is_rung_again(redis_client):
    task = tasks.add.delay(1, 2)
    doorbell.flush()
    [member] = redis_client.zrange(channel_key(), 0, -1)
    expiry = get_channel_layer().expiry
    redis_client.zadd(channel_key(), {member: timezone.now().timestamp() - expiry - 5}, xx=True)
    assert channel.inspect().depth == 0
    assert feeder.feed(IdleWorker(), timezone.now() + LATER) == [task.pk]


def test_row_waiting_for_its_countdown_is_not_rung():
    now = timezone.now()
    Task.objects.create(
        func_name=tasks.add.name,
        args=[1, 1],
        status=Task.STATUS_QUEUED,
        submitted=now - LATER,
        run_after=now + timedelta(hours=1),
    )
    assert feeder.feed(IdleWorker(), now + LATER) == []


def test_unreachable_redis_pauses_feeding_without_raising(caplog):
    now = timezone.now()
    queued_without_doorbell(3, now)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(CHANNEL_LAYERS=channel_layers(address=nowhere)):
        assert feeder.feed(IdleWorker(), now + LATER) == []
        assert feeder.feed(IdleWorker(), now + LATER) == []
    assert caplog.text.count("channel layer unreachable") == 1
    assert len(feeder.feed(IdleWorker(), now + LATER)) == 3
    assert "channel layer reachable again" in caplog.text
