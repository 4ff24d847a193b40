"""Tasks of the controls tests: unique tasks, rate limits, plain-function errorbacks."""

from cq import task
from tests.app.models import Note


@task(unique=True)
def unique_note(cqt, text):
    Note.objects.create(text=text)
    return text


@task(unique="raise")
def unique_or_raise(cqt, text):
    return text


@task(unique_key="user-{user_id}")
def sync_user(cqt, user_id, reason="", extra=None):
    return user_id


@task(unique_key=lambda order, **options: f"order-{order['id']}")
def ship_order(cqt, order, fast=False):
    return order["id"]


@task(unique=True, retries=2, retry_delay=60)
def unique_flaky(cqt, text):
    raise ConnectionError(text)


@task(rate_limit="10/s", atomic=False)
def rate_limited(cqt, n):
    return n


@task(rate_limit="2/s", atomic=False)
def slow_rate(cqt, n):
    return n


def note_failure(failed, error, label):
    """A plain errorback, as django-cq took: no @task."""
    Note.objects.create(text=f"{label}: {failed.func_name}: {error}")


def not_an_errorback(failed):
    """Takes too few arguments for `fn(failed_task, error)`."""


def no_arguments():
    """What a tampered row could name instead of the errorback."""
    Note.objects.create(text="tampered errorback ran")


@task
def fail_with_plain_errorback(cqt, label):
    cqt.errorback(note_failure, (label,))
    raise ValueError("needs reporting")


@task(unique=True)
def unique_with_default(cqt, key, flag=False):
    return key


@task(unique=True)
def unique_any(cqt, *names, **options):
    return names
