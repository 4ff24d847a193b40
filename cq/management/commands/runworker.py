"""`runworker`: channels' command, with cq's hardened worker for `cq-tasks`.

cq must come before `channels` in INSTALLED_APPS for this command to win (a
system check says so).
"""

import sys

from channels import DEFAULT_CHANNEL_LAYER
from channels.management.commands.runworker import Command as ChannelsCommand
from django.core.management import CommandError

from cq import recycling
from cq.banner import banner
from cq.conf import settings as cq_settings
from cq.exceptions import InvalidTaskOption
from cq.queues import DEFAULT_QUEUE, parse_queues
from cq.worker import Worker
from cq.worker_logging import install_default as install_default_logging


class Command(ChannelsCommand):
    help = "Run a worker for channels; `runworker cq-tasks` runs cq's task worker."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(layer=None)
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="cq-tasks: tasks run at once, in threads (default 1).",
        )
        parser.add_argument(
            "--queues",
            default=DEFAULT_QUEUE,
            help="cq-tasks: the queues this worker runs, comma-separated (default: default).",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_false",
            dest="scheduler",
            default=None,
            help="cq-tasks: do not run the cron scheduler in this worker.",
        )
        parser.add_argument(
            "--max-tasks",
            type=int,
            default=None,
            help="cq-tasks: after this many tasks, finish the running ones and "
            "start a fresh process (same command line) in its place.",
        )
        parser.add_argument(
            "--max-memory",
            type=int,
            default=None,
            help="cq-tasks: past this resident memory, in MB, finish the running "
            "tasks and start a fresh process in its place.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="cq-tasks: exit once no queued task is left.",
        )

    def handle(self, *args, **options):
        if cq_settings.CHANNEL not in options["channels"]:
            options["layer"] = options["layer"] or DEFAULT_CHANNEL_LAYER
            return super().handle(*args, **options)
        if len(options["channels"]) > 1:
            raise CommandError(
                f"run {cq_settings.CHANNEL} in a worker of its own, "
                f"not with {', '.join(c for c in options['channels'] if c != cq_settings.CHANNEL)}"
            )
        if options["concurrency"] < 1:
            raise CommandError(f"--concurrency must be at least 1, got {options['concurrency']}")
        for option in ("max_tasks", "max_memory"):
            if options[option] is not None and options[option] < 1:
                flag = "--" + option.replace("_", "-")
                raise CommandError(f"{flag} must be at least 1, got {options[option]}")
        if options["max_tasks"] or options["max_memory"]:
            if not recycling.has_parent():
                # This process stays, small, and runs the worker as its child.
                sys.exit(recycling.supervise())
            recycling.die_with_parent()
        try:
            queues = parse_queues(options["queues"])
        except InvalidTaskOption as exc:
            raise CommandError(str(exc)) from None
        worker = Worker(
            concurrency=options["concurrency"],
            queues=queues,
            layer_alias=options["layer"],
            scheduler=options["scheduler"],
            burst=options["burst"],
            max_tasks=options["max_tasks"],
            max_memory=options["max_memory"],
        )
        install_default_logging()
        self.stdout.write(banner(worker))
        # Redirected to a file or a pipe, stdout is block-buffered: without a
        # flush the banner would show only when the worker exits.
        self.stdout.flush()
        worker.run()
