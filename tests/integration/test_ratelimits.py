"""Rate limits against real Redis: each claimed task gets a start time; early ones go back."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from cq import ratelimits, transitions
from cq.models import Task
from tests.app import controls_tasks as ct
from tests.app import tasks
from tests.helpers import channel_layers

pytestmark = pytest.mark.django_db(transaction=True)


def claim_all(limit=100):
    return transitions.claim_batch(Task, ["default"], limit, "worker-1", timezone.now())


def test_the_first_task_starts_and_the_others_wait_one_interval_apart():
    ct.slow_rate.delay_many([(n,) for n in range(5)])
    tasks.add.delay(1, 2)
    before = timezone.now()
    admitted = ratelimits.admit(claim_all())
    assert sorted(t.func_name for t in admitted) == sorted([ct.slow_rate.name, tasks.add.name])
    deferred = Task.objects.filter(func_name=ct.slow_rate.name, status=Task.STATUS_QUEUED)
    times = sorted(deferred.values_list("run_after", flat=True))
    assert len(times) == 4
    assert not deferred.exclude(worker="").exists()
    assert not deferred.filter(started__isnull=False).exists()
    # "2/s": 0.5 s apart, the first of them 0.5 s after the one that started.
    for number, when in enumerate(times, start=1):
        offset = (when - before).total_seconds()
        assert 0.5 * number - 0.1 <= offset <= 0.5 * number + 0.5, (number, offset)


def test_a_deferred_task_keeps_its_start_time_when_claimed_early_and_runs_when_due():
    ct.slow_rate.delay_many([(n,) for n in range(3)])
    assert len(ratelimits.admit(claim_all())) == 1
    first_times = dict(Task.objects.filter(run_after__isnull=False).values_list("pk", "run_after"))
    # Claimed again before their time (as after a premature release): still
    # not started, and their reservations do not move the schedule on.
    Task.objects.filter(pk__in=first_times).update(run_after=None)
    assert ratelimits.admit(claim_all()) == []
    again = dict(Task.objects.filter(run_after__isnull=False).values_list("pk", "run_after"))
    for pk, when in first_times.items():
        assert abs((again[pk] - when).total_seconds()) < 0.2
    time.sleep(1.1)
    Task.objects.filter(pk__in=first_times).update(run_after=None)
    assert len(ratelimits.admit(claim_all())) == 2


def test_the_limit_is_shared_by_every_worker_through_redis(redis_client):
    ct.slow_rate.delay_many([(n,) for n in range(2)])
    first, second = claim_all(limit=1), claim_all(limit=1)
    assert len(ratelimits.admit(first)) == 1
    assert ratelimits.admit(second) == [], "another worker's claim waits its turn"
    keys = [k.decode() for k in redis_client.keys(f"{settings.REDIS_PREFIX}cq.rate.*")]
    assert f"{settings.REDIS_PREFIX}cq.rate.{ct.slow_rate.name}" in keys


def test_tasks_without_a_limit_cost_no_redis_call(redis_client):
    tasks.add.delay_many([(n, n) for n in range(3)])
    with override_settings(CHANNEL_LAYERS=channel_layers(address="redis://127.0.0.1:1/0")):
        assert len(ratelimits.admit(claim_all())) == 3


def test_with_redis_down_rate_limited_tasks_wait_and_nothing_is_lost():
    ct.slow_rate.delay_many([(n,) for n in range(2)])
    tasks.add.delay(1, 1)
    before = timezone.now()
    with override_settings(CHANNEL_LAYERS=channel_layers(address="redis://127.0.0.1:1/0")):
        admitted = ratelimits.admit(claim_all())
    assert [t.func_name for t in admitted] == [tasks.add.name]
    waiting = Task.objects.filter(func_name=ct.slow_rate.name)
    assert set(waiting.values_list("status", flat=True)) == {Task.STATUS_QUEUED}
    for when in waiting.values_list("run_after", flat=True):
        assert when >= before + timedelta(seconds=ratelimits.OUTAGE_DELAY)


@pytest.mark.parametrize(
    "rate, interval",
    [("10/s", 0.1), ("100/m", 0.6), ("1/5m", 300.0), ("3600/h", 1.0), ("2/d", 43200.0)],
)
def test_parse_reads_a_rate_as_seconds_between_starts(rate, interval):
    assert ratelimits.parse(rate) == pytest.approx(interval)
