"""The cq Django app: registers the system checks, installs the inline runner of
CQ_SERIAL and direct calls, and discovers every app's `tasks` module."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CQConfig(AppConfig):
    name = "cq"
    verbose_name = "cq tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            serial,  # noqa: F401  (installs the inline runner of CQ_SERIAL)
        )

        # Import every installed app's `tasks` module so that each process, web
        # server or worker, knows every `@task` by name. Import only: no
        # database or Redis is touched here.
        autodiscover_modules("tasks")

        from .live import events

        # Status changes reach the browsers watching a task (CQ_LIVE).
        events.connect()
