"""Errorbacks that are plain functions, as in django-cq: stored signed, refused when tampered."""

import logging

import pytest

from cq.exceptions import InvalidTaskOption, UnknownTaskError
from cq.models import Task
from tests.app import controls_tasks as ct
from tests.app import tasks
from tests.app.models import Note
from tests.helpers import run_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_plain_function_errorback_runs_with_the_failed_task_and_its_error():
    failed = ct.fail_with_plain_errorback.delay("alert")
    run_queued()
    failed.refresh_from_db()
    assert failed.status == Task.STATUS_FAILURE
    assert list(Note.objects.values_list("text", flat=True)) == [
        f"alert: {ct.fail_with_plain_errorback.name}: ValueError: needs reporting"
    ]


def test_a_plain_errorback_given_from_outside_the_task_runs_too():
    failed = tasks.fail.delay()
    failed.errorback(ct.note_failure, kwargs={"label": "outside"})
    failed.refresh_from_db()
    assert failed.errorbacks[0]["function"] == "tests.app.controls_tasks.note_failure"
    assert failed.errorbacks[0]["signature"]
    run_queued()
    assert Note.objects.get().text == f"outside: {tasks.fail.name}: ValueError: boom"


def test_a_plain_function_may_be_named_by_its_import_path_as_in_django_cq():
    failed = tasks.fail.delay()
    failed.errorback("tests.app.controls_tasks.note_failure", ("by path",))
    failed.errorback(tasks.report_failure.name, ("by name",))
    with pytest.raises(UnknownTaskError, match="tests.app.nowhere"):
        failed.errorback("tests.app.nowhere.alert")
    run_queued()
    assert sorted(Note.objects.values_list("text", flat=True)) == [
        f"by name: {tasks.fail.name}: ValueError: boom",
        f"by path: {tasks.fail.name}: ValueError: boom",
    ]


def test_a_task_errorback_is_stored_by_its_registered_name_as_before():
    failed = tasks.fail.delay()
    failed.errorback(tasks.report_failure, ("as task",))
    failed.errorback(tasks.report_failure.fn, ("by its function",))
    assert [e["func_name"] for e in failed.errorbacks] == [tasks.report_failure.name] * 2
    run_queued()
    assert Note.objects.count() == 2


def test_a_stored_reference_edited_to_name_another_function_is_refused_and_logged(caplog):
    failed = tasks.fail.delay()
    failed.errorback(ct.note_failure, ("signed",))
    entry = {**failed.errorbacks[0], "function": "tests.app.controls_tasks.no_arguments"}
    Task.objects.filter(pk=failed.pk).update(errorbacks=[entry])
    with caplog.at_level(logging.ERROR, logger="cq"):
        run_queued()
    failed.refresh_from_db()
    assert failed.status == Task.STATUS_FAILURE
    assert not Note.objects.exists(), "the tampered errorback must not run"
    assert "errorback tests.app.controls_tasks.no_arguments failed: ErrorbackRefused" in (
        failed.error
    )
    assert any("errorback refused" in r.getMessage() for r in caplog.records)


def test_a_signed_reference_copied_to_another_task_is_refused():
    original = tasks.fail.delay()
    original.errorback(ct.note_failure, ("copied",))
    other = tasks.fail.delay()
    Task.objects.filter(pk=other.pk).update(errorbacks=original.errorbacks)
    Task.objects.filter(pk=original.pk).update(errorbacks=[])
    run_queued()
    other.refresh_from_db()
    assert "ErrorbackRefused" in other.error
    assert not Note.objects.exists()


def test_a_reference_without_a_signature_is_refused():
    failed = tasks.fail.delay()
    entry = {"function": "tests.app.controls_tasks.no_arguments", "args": [], "kwargs": {}}
    Task.objects.filter(pk=failed.pk).update(errorbacks=[entry])
    run_queued()
    failed.refresh_from_db()
    assert "ErrorbackRefused" in failed.error and not Note.objects.exists()


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda failed, error: None, "lambda"),
        (print, "plain module-level function"),
        (ct.not_an_errorback, "cannot be called as"),
    ],
)
def test_an_errorback_a_worker_could_not_find_or_call_is_refused_at_the_call(fn, message):
    task = tasks.fail.delay()
    with pytest.raises(InvalidTaskOption, match=message):
        task.errorback(fn)
    task.refresh_from_db()
    assert task.errorbacks == []


def test_a_closure_is_refused_at_the_call():
    label = "captured"

    def closure(failed, error):
        Note.objects.create(text=label)

    task = tasks.fail.delay()
    with pytest.raises(InvalidTaskOption, match="closure"):
        task.errorback(closure)
