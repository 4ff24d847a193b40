"""Tasks written with Django's task API only: no cq import, as in a project that
uses `TASKS = {"default": {"BACKEND": "cq.backends.CQBackend"}}`."""

import asyncio

from django.core.cache import cache

from tests.app.models import Note

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task


class PaymentDeclined(Exception):
    pass


@task
def add(a, b):
    return a + b


@task(queue_name="emails", priority=10)
def shout(text):
    return text.upper()


@task
def decline(reason):
    raise PaymentDeclined(reason)


@task
def record(text):
    """Leaves a Note: the order of Notes is the order the tasks ran in."""
    Note.objects.create(text=text)
    return text


@task
def returns_object():
    return object()


@task
def echo(value):
    return value


@task(backend="retrying", takes_context=True)
def flaky(context, key, failures):
    """Fails `failures` times, then returns what its context said of the attempt."""
    cache.add(key, 0)
    run = cache.incr(key)
    if run <= failures:
        raise ConnectionError(f"run {run}")
    return {"attempt": context.attempt, "run": run, "id": context.task_result.id}


@task
async def fetch(value):
    await asyncio.sleep(0.01)
    return value * 2
