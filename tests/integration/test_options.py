"""Bad options are refused at the call, with nothing written and the caller's
transaction still usable; arguments whose dict keys collide as JSON are refused."""

from datetime import datetime

import pytest
from django.db import transaction
from django.utils import timezone

from cq.backends import CQBackend
from cq.djangotasks import InvalidTaskBackend
from cq.exceptions import InvalidTaskOption, SerializationError
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

BAD_CALL_OPTIONS = [
    {"countdown": float("inf")},
    {"countdown": float("nan")},
    {"countdown": 1e12},  # past the year 9999: OverflowError before
    {"countdown": -1},
    {"countdown": "10"},
    {"result_ttl": -5},  # reached the database's check constraint before
    {"result_ttl": "abc"},
    {"result_ttl": 1.5},
    {"result_ttl": 2**31},  # past the column's 4-byte integer
    {"time_limit": float("nan")},  # stored, and the task ran with no limit
    {"time_limit": float("inf")},
    {"time_limit": -1},
    {"run_after": "tomorrow"},
    {"run_after": datetime(2030, 1, 1)},  # naive
    {"queue": "no spaces"},
    {"priority": 101},
]


def option_id(options):
    return "-".join(f"{name}={value!r}" for name, value in options.items())


@pytest.mark.parametrize("options", BAD_CALL_OPTIONS, ids=option_id)
def test_a_bad_call_option_is_refused_at_the_call_and_nothing_is_written(options):
    [name] = options
    with pytest.raises(InvalidTaskOption, match=name):
        tasks.add.delay_args((1, 2), **options)
    with pytest.raises(InvalidTaskOption, match=name):
        tasks.add.delay_many([(1, 2)], **options)
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "options", [{"result_ttl": -5}, {"countdown": float("inf")}], ids=option_id
)
def test_a_refused_call_leaves_the_caller_s_transaction_usable(options):
    # PostgreSQL refuses every statement of a transaction after a failed one:
    # the refusal must come before any statement of the call is sent.
    with transaction.atomic():
        Note.objects.create(text="before")
        with pytest.raises(InvalidTaskOption):
            tasks.add.delay_args((1, 2), **options)
        assert Note.objects.count() == 1
        queued = tasks.add.delay_args((1, 2), result_ttl=60)
    assert Note.objects.filter(text="before").exists()
    assert list(Task.objects.values_list("pk", "result_ttl")) == [(queued.pk, 60)]


def test_the_options_of_a_chained_task_and_a_subtask_are_checked_alike():
    first = tasks.add.delay(1, 2)
    with pytest.raises(InvalidTaskOption, match="countdown"):
        first.chain(tasks.add, (3,), countdown=float("nan"))
    with pytest.raises(InvalidTaskOption, match="time_limit"):
        first.chain(tasks.add, (3,), time_limit=float("inf"))
    assert list(Task.objects.values_list("pk", flat=True)) == [first.pk]


@pytest.mark.parametrize(
    "options",
    [
        {"result_ttl": -5},
        {"result_ttl": "abc"},
        {"retry_delay": float("nan")},
        {"retry_delay": float("inf")},
        {"retries": -1},
    ],
    ids=option_id,
)
def test_a_backend_with_a_bad_option_value_is_refused_when_it_is_made(options):
    [name] = options
    with pytest.raises(InvalidTaskBackend, match=name):
        CQBackend("bad", {"OPTIONS": options})


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ([{1: "a", "1": "b"}], {}),
        ([], {"mapping": {1: "a", "1": "b"}}),
        ([[{"x": {None: 1, "null": 2}}]], {}),
        ([{True: 1, "true": 2}], {}),
    ],
)
def test_dict_keys_that_collide_as_json_are_refused(args, kwargs):
    # JSON keys are strings: {1: "a", "1": "b"} was stored as {"1": "b"}.
    with pytest.raises(SerializationError, match="collide|both"):
        tasks.echo.delay_args(args, kwargs)
    assert not Task.objects.exists()


def test_dict_keys_of_mixed_types_that_do_not_collide_are_stored_as_json_keys():
    task = tasks.echo.delay({1: "a", "b": 2, None: 3})
    task.refresh_from_db()
    assert task.args == [{"1": "a", "b": 2, "null": 3}]


def test_run_after_as_an_aware_datetime_is_kept():
    when = timezone.now().replace(year=2030)
    assert tasks.add.delay_args((1, 2), run_after=when).run_after == when
