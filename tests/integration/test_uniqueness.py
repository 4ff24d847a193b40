"""Unique tasks: one active task per key, decided by the database's partial unique index."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from cq import scheduler
from cq.exceptions import AlreadyQueued, InvalidTaskOption, SerializationError
from cq.models import RepeatingTask, Task
from tests.app import controls_tasks as ct
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import run_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_delay_of_a_unique_task_returns_the_active_task_with_its_arguments():
    first = ct.unique_note.delay("a")
    again = ct.unique_note.delay("a")
    other = ct.unique_note.delay("b")
    assert again.pk == first.pk and again.status == Task.STATUS_QUEUED
    assert other.pk != first.pk
    assert Task.objects.filter(func_name=ct.unique_note.name).count() == 2
    assert first.unique_key.startswith(f"{ct.unique_note.name}:")


def test_the_key_is_free_again_once_the_task_finished():
    first = ct.unique_note.delay("a")
    run_queued()
    first.refresh_from_db()
    assert first.status == Task.STATUS_SUCCESS
    second = ct.unique_note.delay("a")
    assert second.pk != first.pk and second.status == Task.STATUS_QUEUED


def test_a_revoked_task_frees_its_key():
    first = ct.unique_note.delay("a")
    first.revoke()
    assert ct.unique_note.delay("a").pk != first.pk


def test_a_task_waiting_for_its_retry_keeps_its_key():
    first = ct.unique_flaky.delay("down")
    run_queued()
    first.refresh_from_db()
    assert first.status == Task.STATUS_RETRY
    assert ct.unique_flaky.delay("down").pk == first.pk


def test_unique_raise_raises_already_queued_naming_the_active_task():
    first = ct.unique_or_raise.delay("x")
    with pytest.raises(AlreadyQueued, match=str(first.pk)) as raised:
        ct.unique_or_raise.delay("x")
    assert raised.value.task.pk == first.pk
    assert Task.objects.filter(func_name=ct.unique_or_raise.name).count() == 1


def test_a_key_template_takes_the_arguments_by_name_positional_or_not():
    first = ct.sync_user.delay(7, reason="signup")
    assert ct.sync_user.delay(user_id=7, reason="login").pk == first.pk
    assert ct.sync_user.delay(8).pk != first.pk
    assert first.unique_key == f"{ct.sync_user.name}:user-7"


def test_a_callable_key_receives_the_arguments():
    first = ct.ship_order.delay({"id": 3, "lines": [1]})
    assert ct.ship_order.delay({"id": 3, "lines": [2]}, fast=True).pk == first.pk
    assert ct.ship_order.delay({"id": 4}).pk != first.pk


def test_a_key_that_cannot_be_made_raises_at_the_call_and_writes_nothing():
    with pytest.raises(InvalidTaskOption, match="user_id"):
        ct.sync_user.delay(reason="no user")
    with pytest.raises(InvalidTaskOption, match="order"):
        ct.ship_order.delay({"no id": 1})
    assert not Task.objects.exists()


def test_losing_the_race_inside_a_transaction_does_not_break_it():
    with transaction.atomic():
        first = ct.unique_note.delay("a")
        again = ct.unique_note.delay("a")
        Note.objects.create(text="the transaction goes on")
    assert again.pk == first.pk
    assert Note.objects.filter(text="the transaction goes on").exists()
    assert Task.objects.filter(func_name=ct.unique_note.name).count() == 1


def test_a_call_may_opt_out_or_in():
    first = ct.unique_note.delay("a")
    assert ct.unique_note.delay_args(("a",), unique=False).pk != first.pk
    with pytest.raises(AlreadyQueued):
        ct.unique_note.delay_args(("a",), unique="raise")
    with pytest.raises(InvalidTaskOption, match="unique"):
        ct.unique_note.delay_args(("a",), unique="maybe")


def test_a_direct_call_runs_even_while_its_key_is_queued():
    queued = ct.unique_note.delay("a")
    assert ct.unique_note("a") == "a"
    queued.refresh_from_db()
    assert queued.status == Task.STATUS_QUEUED


def test_delay_many_gives_each_key_one_task():
    active = ct.unique_note.delay("a")
    created = ct.unique_note.delay_many([("a",), ("b",), ("b",), ("c",)])
    assert created[0].pk == active.pk
    assert created[1].pk == created[2].pk
    assert len({t.pk for t in created}) == 3
    assert Task.objects.filter(func_name=ct.unique_note.name).count() == 3
    with pytest.raises(AlreadyQueued):
        ct.unique_or_raise.delay_many([("x",), ("x",)])


def test_a_repeating_unique_task_launches_no_second_run_while_one_is_active():
    schedule = RepeatingTask.schedule("* * * * *", ct.unique_or_raise, ("tick",), coalesce=False)
    first = scheduler.run_now(schedule)
    later = timezone.now() + timedelta(minutes=1)
    RepeatingTask.objects.filter(pk=schedule.pk).update(next_run=later)
    schedule.refresh_from_db()
    assert scheduler.dispatch(schedule, later).pk == first.pk
    assert Task.objects.filter(func_name=ct.unique_or_raise.name).count() == 1


def test_the_unique_index_covers_exactly_the_active_statuses():
    constraint = next(c for c in Task._meta.constraints if c.name == "cq_task_unique_key")
    statuses = dict(constraint.condition.children)["status__in"]
    assert set(statuses) == Task.STATUS_ACTIVE


def test_subtasks_and_chained_tasks_belong_to_their_tree_and_are_not_deduplicated():
    active = ct.unique_note.delay("a")
    parent = tasks.add.delay(1, 2)
    child = parent.chain(ct.unique_note, ())
    assert child.pk != active.pk and child.previous_id == parent.pk
    assert child.unique_key is None
    run_queued()
    assert Task.objects.get(pk=child.pk).status == Task.STATUS_SUCCESS


def test_one_call_spelled_three_ways_gets_one_key():
    # Bound to the function's parameters, defaults applied, before hashing.
    first = ct.unique_with_default.delay("k1")
    assert ct.unique_with_default.delay(key="k1").pk == first.pk
    assert ct.unique_with_default.delay("k1", flag=False).pk == first.pk
    assert ct.unique_with_default.delay("k1", True).pk != first.pk
    assert Task.objects.filter(func_name=ct.unique_with_default.name).count() == 2


def test_a_function_with_star_args_and_star_star_kwargs_keys_what_it_receives():
    first = ct.unique_any.delay("a", "b", mode=1)
    assert ct.unique_any.delay("a", "b", mode=1).pk == first.pk
    assert ct.unique_any.delay("a", mode=1).pk != first.pk
    assert ct.unique_any.delay("a", "b").pk != first.pk


def test_a_call_the_function_cannot_take_is_refused_at_delay_with_nothing_written():
    with pytest.raises(InvalidTaskOption, match="missing a required argument: 'key'"):
        ct.unique_with_default.delay()
    with pytest.raises(InvalidTaskOption, match="unexpected keyword argument 'kee'"):
        ct.unique_with_default.delay(kee="k1")
    assert not Task.objects.exists()


def test_a_call_made_positionally_in_full_keeps_the_key_it_had_before_calls_were_bound():
    # Tasks queued before the upgrade hold keys hashed from [args, kwargs] as
    # given: the same call after it must find them.
    import hashlib
    import json

    before = hashlib.sha256(json.dumps([["k1", True], {}], sort_keys=True).encode()).hexdigest()
    task = ct.unique_with_default.delay("k1", True)
    assert task.unique_key == f"{ct.unique_with_default.name}:{before}"


def test_a_unique_task_takes_dict_keys_of_mixed_types_and_refuses_colliding_ones():
    # A TypeError from sorting the keys before; now keyed as stored, as JSON.
    first = ct.unique_note.delay({1: "a", "b": 2})
    assert ct.unique_note.delay({"1": "a", "b": 2}).pk == first.pk
    with pytest.raises(SerializationError, match="both '1'"):
        ct.unique_note.delay({1: "a", "1": "b"})
    assert Task.objects.count() == 1
