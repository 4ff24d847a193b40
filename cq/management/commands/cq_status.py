"""`cq_status`: queue depth, workers and their heartbeats, recent failures."""

from django.core.management.base import BaseCommand

from cq import status


class Command(BaseCommand):
    help = (
        "Show cq's state: active tasks by status, the channel's depth in Redis, "
        "workers with their last heartbeat and running tasks, failures in the last hour."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--failures",
            type=int,
            default=5,
            help="How many of the last hour's failures to list (default 5).",
        )

    def handle(self, *args, **options):
        self.stdout.write(
            status.render(status.collect(failures_shown=options["failures"])), ending=""
        )
