"""The scheduler tick, schedule_task and run_after, with fixed clocks; then
real workers: a countdown end to end and three workers on one `* * * * *`."""

import logging
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, OperationalError, connection, connections
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from django.utils import timezone

from cq import doorbell, housekeeping, scheduler
from cq.checks import check_time_zone_support
from cq.consumers import run_task
from cq.exceptions import InvalidSchedule, SerializationError, UnknownTaskError
from cq.models import RepeatingTask, Task, schedule_task
from tests.app import tasks

NOW = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)


@contextmanager
def frozen(now):
    """`timezone.now()` returns `now` (for code that reads the clock itself)."""
    with mock.patch("django.utils.timezone.now", return_value=now):
        yield


def repeating(crontab="0 3 * * *", next_run=NOW, fn=tasks.record_run, args=("run",), **options):
    """A repeating task whose next run is `next_run`."""
    with frozen(next_run - timedelta(seconds=1)):
        created = RepeatingTask.schedule(crontab, fn, args, **options)
    assert created.next_run == next_run
    return created


def worker_stub(scheduler_on=True):
    return SimpleNamespace(
        name="stub",
        concurrency=1,
        idle=False,
        scheduler=scheduler_on,
        queues=["default"],
        heartbeat_steady=lambda: True,
        running_ids=set,
    )


# ---- schedule_task and validation


@pytest.mark.django_db
def test_schedule_task_stores_a_validated_task_with_its_next_run():
    with frozen(NOW):
        created = schedule_task(
            RepeatingTask,
            " 0  4 * * * ",
            tasks.record_run,
            ["x"],
            {},
            timezone="Europe/Paris",
            coalesce=False,
            result_ttl=60,
        )
    created.refresh_from_db()
    assert created.func_name == "tests.app.tasks.record_run"
    assert created.crontab == "0 4 * * *"
    assert (created.args, created.kwargs) == (["x"], {})
    assert created.next_run == datetime(2030, 1, 2, 3, 0, tzinfo=UTC)  # 04:00 in Paris
    assert (created.coalesce, created.result_ttl, created.enabled) == (False, 60, True)


@pytest.mark.django_db
def test_schedule_task_works_with_the_historical_model_of_a_migration():
    state = MigrationLoader(connection).project_state(("cq", "0001_initial"))
    historical = state.apps.get_model("cq", "RepeatingTask")
    assert not hasattr(historical, "schedule")
    with frozen(NOW):
        schedule_task(historical, "*/5 * * * *", "tests.app.tasks.record_run", ("m",))
    stored = RepeatingTask.objects.get()
    assert stored.next_run == NOW + timedelta(minutes=5)
    assert stored.args == ["m"]


@pytest.mark.django_db
def test_a_disabled_schedule_has_no_next_run():
    assert RepeatingTask.schedule("* * * * *", tasks.add, (1, 2), enabled=False).next_run is None


@pytest.mark.django_db
@pytest.mark.parametrize("fn", ["os.system", __import__("os").system, "tests.app.tasks.nope"])
def test_schedule_task_refuses_what_is_not_a_registered_task(fn):
    with pytest.raises(UnknownTaskError):
        schedule_task(RepeatingTask, "* * * * *", fn)
    assert not RepeatingTask.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"crontab": "* * *"}, InvalidSchedule, "has 3 field(s)"),
        ({"timezone": "Europe/Atlantis"}, InvalidSchedule, "unknown time zone"),
        ({"args": (object(),)}, SerializationError, "JSON"),
        ({"args": "abc"}, TypeError, "args must be a list"),
        ({"kwargs": [1]}, TypeError, "kwargs must be a dict"),
        ({"result_ttl": -1}, TypeError, "result_ttl must be"),
        ({"next_run": NOW}, TypeError, "unknown repeating task option(s) next_run"),
        ({"args": (1, 2, 3)}, TypeError, "too many positional arguments"),
        ({"args": (1,)}, TypeError, "missing a required argument: 'b'"),
        (
            {"args": (1,), "kwargs": {"bb": 2}},
            TypeError,
            "tests.app.tasks.add(cqt, a, b) does not accept args=[1] kwargs={'bb': 2}: "
            "got an unexpected keyword argument 'bb' (did you mean 'b'?)",
        ),
    ],
)
def test_schedule_task_refuses_bad_input_with_a_clear_error(kwargs, error, message):
    call = {"crontab": "* * * * *", "fn_or_name": tasks.add, **kwargs}
    with pytest.raises(error) as raised:
        schedule_task(RepeatingTask, **call)
    assert message in str(raised.value)


def test_clean_reports_each_bad_field():
    bad = RepeatingTask(
        func_name="os.system",
        crontab="61 * * * *",
        timezone="Mars/Base",
        args={"a": 1},
        kwargs=[1],
    )
    with pytest.raises(ValidationError) as raised:
        bad.clean()
    errors = raised.value.message_dict
    assert set(errors) == {"func_name", "crontab", "timezone", "args", "kwargs"}
    assert "no @task is registered as 'os.system'" in errors["func_name"][0]
    assert "the minute field '61'" in errors["crontab"][0]


@pytest.mark.django_db
def test_arguments_the_function_does_not_take_are_refused_before_any_run():
    with pytest.raises(TypeError, match="unexpected keyword argument 'mesage'"):
        RepeatingTask.schedule("0 3 * * *", tasks.fail, kwargs={"mesage": "x"})
    assert not RepeatingTask.objects.exists()
    typo = RepeatingTask(func_name=tasks.fail.name, crontab="0 3 * * *", kwargs={"mesage": "x"})
    with pytest.raises(ValidationError) as raised:
        typo.clean()
    [message] = raised.value.message_dict["kwargs"]
    assert message.startswith("tests.app.tasks.fail(cqt, message='boom') does not accept")
    extra = RepeatingTask(func_name=tasks.fail.name, crontab="0 3 * * *", args=["a", "b"])
    with pytest.raises(ValidationError) as raised:
        extra.clean()
    assert "too many positional arguments" in raised.value.message_dict["args"][0]
    RepeatingTask(func_name=tasks.fail.name, crontab="0 3 * * *", kwargs={"message": "x"}).clean()


# ---- saving recomputes next_run


@pytest.mark.django_db
def test_changing_the_crontab_recomputes_next_run():
    task = repeating("0 3 * * *")
    with frozen(NOW):
        task.crontab = "30 5 * * *"
        task.save()
    task.refresh_from_db()
    assert task.next_run == NOW.replace(hour=5, minute=30)


@pytest.mark.django_db
def test_changing_the_time_zone_recomputes_next_run():
    task = repeating("0 3 * * *")
    with frozen(NOW):
        task.timezone = "Asia/Tokyo"
        task.save(update_fields=["timezone"])
    task.refresh_from_db()
    assert task.next_run == datetime(2030, 1, 1, 18, 0, tzinfo=UTC)  # 03:00 JST


@pytest.mark.django_db
def test_disabling_clears_next_run_and_enabling_schedules_from_now():
    task = repeating("0 3 * * *")
    task.enabled = False
    task.save()
    assert RepeatingTask.objects.get().next_run is None
    later = NOW + timedelta(days=3, hours=1)
    with frozen(later):
        task.enabled = True
        task.save()
    assert RepeatingTask.objects.get().next_run == datetime(2030, 1, 5, 3, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_saving_other_fields_keeps_next_run():
    task = repeating("0 3 * * *")
    task.args = ["changed"]
    task.save()
    task.refresh_from_db()
    assert (task.next_run, task.args) == (NOW, ["changed"])


@pytest.mark.django_db
def test_saving_a_partly_loaded_row_writes_only_what_was_loaded(django_assert_num_queries):
    repeating("0 3 * * *")
    partial = RepeatingTask.objects.only("pk", "args").get()
    partial.args = ["partial"]
    with django_assert_num_queries(1):
        partial.save()
    stored = RepeatingTask.objects.get()
    assert (stored.args, stored.crontab, stored.next_run) == (["partial"], "0 3 * * *", NOW)


@pytest.mark.django_db
def test_saving_a_stale_copy_cannot_launch_an_occurrence_twice():
    task = repeating("0 3 * * *")
    stale = RepeatingTask.objects.get(pk=task.pk)  # an admin form opened before the tick
    assert len(scheduler.tick(NOW)) == 1
    stale.kwargs = {}
    stale.args = ["edited"]
    stale.save()
    assert scheduler.tick(NOW) == []
    assert RepeatingTask.objects.get().next_run == NOW + timedelta(days=1)


# ---- the tick


@pytest.mark.django_db(transaction=True)
def test_a_due_occurrence_is_launched_once_and_next_run_moves_on():
    task = repeating("0 3 * * *", args=("nightly",), result_ttl=30)
    assert scheduler.tick(NOW - timedelta(seconds=1)) == []
    [run] = scheduler.tick(NOW + timedelta(seconds=0.4))
    assert scheduler.tick(NOW + timedelta(seconds=0.4)) == []
    run.refresh_from_db()
    assert (run.func_name, run.args, run.status) == (
        "tests.app.tasks.record_run",
        ["nightly"],
        Task.STATUS_QUEUED,
    )
    assert (run.repeating_task_id, run.result_ttl) == (task.pk, 30)
    task.refresh_from_db()
    assert task.next_run == NOW + timedelta(days=1)
    assert task.last_run == NOW + timedelta(seconds=0.4)


@pytest.mark.django_db
def test_a_tick_with_nothing_due_is_one_query(django_assert_num_queries):
    repeating("0 3 * * *")
    repeating("0 4 * * *", next_run=NOW + timedelta(hours=1))
    with django_assert_num_queries(1):
        assert scheduler.tick(NOW - timedelta(minutes=1)) == []


@pytest.mark.django_db
def test_two_workers_that_read_the_same_occurrence_launch_it_once():
    repeating("0 3 * * *", coalesce=False)  # the compare-and-set alone decides
    first_read, second_read = scheduler.due(NOW), scheduler.due(NOW)
    assert scheduler.dispatch(first_read[0], NOW) is not None
    assert scheduler.dispatch(second_read[0], NOW) is None
    assert Task.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_ticks_in_parallel_threads_launch_each_occurrence_once():
    for hour in range(3):
        repeating(f"0 {hour} * * *", next_run=NOW - timedelta(hours=3 - hour))
    threads, launched, errors = 6, [], []
    barrier = threading.Barrier(threads)

    def tick():
        try:
            barrier.wait(10)
            launched.extend(scheduler.tick(NOW))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=tick) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    assert errors == []
    assert len(launched) == 3
    assert sorted(Task.objects.values_list("repeating_task__crontab", flat=True)) == [
        "0 0 * * *",
        "0 1 * * *",
        "0 2 * * *",
    ]


@pytest.mark.django_db
def test_missed_runs_after_downtime_run_once_then_follow_the_schedule():
    task = repeating("*/5 * * * *", next_run=NOW, coalesce=False)
    back = NOW + timedelta(hours=7, minutes=2)
    assert len(scheduler.tick(back)) == 1
    assert scheduler.tick(back + timedelta(minutes=2)) == []
    task.refresh_from_db()
    assert task.next_run == NOW + timedelta(hours=7, minutes=5)
    assert len(scheduler.tick(NOW + timedelta(hours=7, minutes=5))) == 1
    assert Task.objects.count() == 2


@pytest.mark.django_db
def test_an_occurrence_is_skipped_while_the_previous_run_is_active():
    task = repeating("* * * * *")
    [first] = scheduler.tick(NOW)
    assert scheduler.tick(NOW + timedelta(minutes=1)) == []
    task.refresh_from_db()
    assert task.next_run == NOW + timedelta(minutes=2)
    assert task.last_run == NOW
    Task.objects.filter(pk=first.pk).update(status=Task.STATUS_SUCCESS)
    assert len(scheduler.tick(NOW + timedelta(minutes=2))) == 1


@pytest.mark.django_db
def test_without_coalescing_runs_overlap():
    repeating("* * * * *", coalesce=False)
    scheduler.tick(NOW)
    scheduler.tick(NOW + timedelta(minutes=1))
    assert Task.objects.filter(status=Task.STATUS_QUEUED).count() == 2


@pytest.mark.django_db
def test_a_disabled_repeating_task_never_runs():
    task = repeating("* * * * *")
    # Even with a stale next_run left by a bulk update, `enabled` is checked.
    RepeatingTask.objects.filter(pk=task.pk).update(enabled=False)
    for minute in range(3):
        assert scheduler.tick(NOW + timedelta(minutes=minute)) == []
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_the_schedule_time_zone_defaults_to_time_zone():
    nine_in_tokyo = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    with override_settings(TIME_ZONE="Asia/Tokyo"):
        task = repeating("0 9 * * *", next_run=nine_in_tokyo)
        scheduler.tick(nine_in_tokyo)
    task.refresh_from_db()
    assert task.next_run == datetime(2030, 1, 2, 0, 0, tzinfo=UTC)  # 09:00 JST


@pytest.mark.django_db
def test_deleting_a_repeating_task_keeps_its_past_runs():
    task = repeating("* * * * *")
    [run] = scheduler.tick(NOW)
    task.delete()
    run.refresh_from_db()
    assert run.repeating_task_id is None


@pytest.mark.django_db
def test_a_stored_invalid_schedule_is_parked_and_the_others_still_run(caplog):
    broken = repeating("* * * * *")
    RepeatingTask.objects.filter(pk=broken.pk).update(crontab="61 * * * *")
    repeating("0 3 * * *")
    with caplog.at_level(logging.ERROR, logger="cq.scheduler"):
        assert len(scheduler.tick(NOW)) == 1
    assert RepeatingTask.objects.get(pk=broken.pk).next_run is None
    assert "invalid schedule" in caplog.text


@pytest.mark.django_db
def test_stored_arguments_that_cannot_be_launched_are_parked_and_the_others_still_run(caplog):
    broken = repeating("* * * * *")
    RepeatingTask.objects.filter(pk=broken.pk).update(args={"not": "a list"})
    repeating("0 3 * * *")
    with caplog.at_level(logging.ERROR, logger="cq.scheduler"):
        assert len(scheduler.tick(NOW)) == 1
    assert RepeatingTask.objects.get(pk=broken.pk).next_run is None
    assert "invalid schedule or arguments" in caplog.text


@pytest.mark.django_db
def test_an_unknown_task_name_is_left_for_a_worker_that_knows_it():
    task = repeating("* * * * *")
    RepeatingTask.objects.filter(pk=task.pk).update(func_name="shop.tasks.from_a_newer_release")
    assert scheduler.tick(NOW) == []
    assert RepeatingTask.objects.get(pk=task.pk).next_run == NOW


@pytest.mark.django_db(transaction=True)
def test_a_database_error_rolls_the_occurrence_back_for_the_next_tick():
    repeating("* * * * *")
    lost = OperationalError("connection lost")
    with mock.patch.object(scheduler, "delay", side_effect=lost), pytest.raises(OperationalError):
        scheduler.tick(NOW)
    assert not Task.objects.exists()
    assert RepeatingTask.objects.get().next_run == NOW
    assert len(scheduler.tick(NOW)) == 1


# ---- in the worker's housekeeping


@pytest.mark.django_db
def test_housekeeping_launches_repeating_tasks_only_with_the_scheduler_on():
    repeating("* * * * *")
    housekeeping.run_once(worker_stub(scheduler_on=False), NOW)
    assert not Task.objects.exists()
    housekeeping.run_once(worker_stub(scheduler_on=True), NOW)
    assert Task.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_tick_is_logged_and_housekeeping_goes_on(caplog):
    gone = DatabaseError("database went away")
    # The recovery step comes after the tick: this task of a dead worker shows it ran.
    orphan = Task.objects.create(
        func_name=tasks.add.name,
        status=Task.STATUS_RUNNING,
        worker="dead",
        started=NOW - timedelta(hours=1),
    )
    with (
        mock.patch.object(scheduler, "tick", side_effect=gone),
        caplog.at_level(logging.ERROR, logger="cq.housekeeping"),
    ):
        housekeeping.run_once(worker_stub(), NOW)
    assert "step=launch_repeating" in caplog.text
    assert Task.objects.get(pk=orphan.pk).status == Task.STATUS_LOST


def test_a_project_without_time_zone_support_gets_a_warning():
    with override_settings(USE_TZ=False):
        assert [w.id for w in check_time_zone_support(None)] == ["cq.W002"]
    assert check_time_zone_support(None) == []


# ---- run_after and countdown


@pytest.mark.django_db(transaction=True)
def test_a_task_with_run_after_waits_in_the_table_until_due():
    due_at = timezone.now() + timedelta(hours=1)
    task = tasks.record_run.delay_args(("later",), run_after=due_at)
    assert (task.status, task.run_after) == (Task.STATUS_QUEUED, due_at)
    assert run_task(task.pk) is None  # a doorbell that came early is ignored
    housekeeping.run_once(worker_stub(), due_at - timedelta(seconds=1))
    assert Task.objects.get(pk=task.pk).run_after == due_at
    with mock.patch.object(doorbell.doorbell, "ring_rows") as ring:
        housekeeping.run_once(worker_stub(), due_at)
    ring.assert_called_once_with([(task.pk, "default")])
    assert run_task(task.pk).status == Task.STATUS_SUCCESS


@pytest.mark.django_db
def test_a_countdown_sets_run_after_from_now():
    with frozen(NOW):
        task = tasks.add.delay_args((1, 2), countdown=90)
    assert task.run_after == NOW + timedelta(seconds=90)
    assert list(Task.objects.due(NOW + timedelta(seconds=89))) == []
    assert list(Task.objects.due(NOW + timedelta(seconds=90))) == [task]
