"""`cq_status`: queue depth, workers and their heartbeats, recent failures."""

import json

from django.core.management.base import BaseCommand

from cq import metrics, status


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
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the same information as one JSON object, for scripts and monitoring.",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json", "prometheus"],
            default="text",
            help="text (default), json (as --json) or prometheus (cq.metrics, for a "
            "textfile collector).",
        )

    def handle(self, *args, **options):
        if options["format"] == "prometheus":
            self.stdout.write(metrics.render(), ending="")
            return
        options["json"] = options["json"] or options["format"] == "json"
        state = status.collect(failures_shown=options["failures"])
        if options["json"]:
            self.stdout.write(json.dumps(status.as_dict(state), indent=2))
        else:
            self.stdout.write(status.render(state), ending="")
