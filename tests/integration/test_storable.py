"""What the database cannot store is refused where it enters (arguments,
results) with a SerializationError, and made storable where cq writes it."""

import pytest
from django.db import transaction

from cq import storable
from cq.exceptions import SerializationError
from cq.models import Task
from tests.app import tasks
from tests.app.models import Note

NUL, SURROGATE = "a\x00b", "a\ud800b"


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value, says",
    [
        ([NUL], "NUL characters"),
        ({"key": [SURROGATE]}, "lone surrogates"),
        ({NUL: 1}, "NUL characters"),
        (nested(10_000), "nested this deeply"),
        ([float("nan")], "JSON serialisable"),
    ],
)
def test_values_the_database_cannot_store_are_refused(value, says):
    with pytest.raises(SerializationError, match=says):
        storable.check_json(value, "arguments")


@pytest.mark.parametrize(
    "value",
    [
        ["\\u0000 is six characters here", "\\\\u0000"],
        ["emoji \U0001f600 is a valid surrogate pair in JSON"],
        [{"café": "naïve"}],
    ],
)
def test_text_that_only_looks_odd_is_accepted(value):
    storable.check_json(value, "arguments")


def test_serialization_error_is_a_type_error():
    with pytest.raises(TypeError):
        storable.check_json([NUL], "arguments")


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("plain", "plain"),
        (NUL, "a\\x00b"),
        (SURROGATE, "a\\ud800b"),
        ("é\x00\ud800", "é\\x00\\ud800"),
    ],
)
def test_text_is_made_storable_with_visible_escapes(raw, stored):
    assert storable.text(raw) == stored


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((NUL,), {}),
        ((), {"text": SURROGATE}),
        ((nested(10_000),), {}),
    ],
)
def test_delay_refuses_such_arguments_and_writes_nothing(args, kwargs):
    with transaction.atomic():
        with pytest.raises(SerializationError):
            tasks.echo.delay(*args, **kwargs)
        # The caller's transaction is intact: it goes on and commits.
        Note.objects.create(text="after")
    assert not Task.objects.exists()
    assert Note.objects.filter(text="after").exists()


@pytest.mark.django_db(transaction=True)
def test_a_subtask_with_such_arguments_fails_its_parent_clearly():
    from cq.execution import run_task

    task = tasks.spawn_bad_text.delay()
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == Task.STATUS_FAILURE
    assert "must not contain NUL characters" in task.error
    assert Task.objects.count() == 1
