"""A Django task in a module no `tasks` module imports: a worker imports it by
the task's module path when it first meets one of its rows."""

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task


@task
def triple(value):
    return value * 3
