"""`cq_bench`: cq's benchmark against this project's database and channel layer.

Starts real `runworker cq-tasks` processes and prints one table; see
docs/performance.md. The work lives in `bench`.
"""

from django.core.management import BaseCommand, CommandError

from bench.report import render
from bench.runner import DEFAULT_SCENARIOS, SCENARIOS, Bench, BenchError

FULL = {
    "n": 5000,
    "reps": 3,
    "latency_samples": 300,
    "idle_samples": 20,
    "memory_tasks": 100_000,
    "time_limit": 3600,
}
QUICK = {
    "n": 300,
    "reps": 1,
    "latency_samples": 30,
    "idle_samples": 5,
    "memory_tasks": 2000,
    "time_limit": 300,
}


class Command(BaseCommand):
    help = "Benchmark cq: enqueue rates, throughput, latency, work per task, worker memory."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, help="tasks per throughput run (default 5000)")
        parser.add_argument("--reps", type=int, help="repetitions; the table shows the median")
        parser.add_argument(
            "--workers",
            default="1,2",
            help="worker process counts for the throughput runs (default 1,2)",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="--concurrency of each worker process (default 1)",
        )
        parser.add_argument(
            "--latency-samples",
            type=int,
            help="round trips per repetition, busy worker (default 300)",
        )
        parser.add_argument(
            "--idle-samples", type=int, help="round trips per repetition, idle worker (default 20)"
        )
        parser.add_argument(
            "--memory-tasks", type=int, help="tasks of the worker memory run (default 100000)"
        )
        parser.add_argument(
            "--only",
            help=f"comma-separated scenarios: {','.join(SCENARIOS)} "
            f"(default: all but {','.join(sorted(set(SCENARIOS) - set(DEFAULT_SCENARIOS)))})",
        )
        parser.add_argument(
            "--quick",
            action="store_true",
            help="small defaults: N=300, 1 repetition, 2000 memory tasks",
        )
        parser.add_argument(
            "--time-limit",
            type=float,
            help="seconds after which the bench stops (default 3600; quick 300)",
        )
        parser.add_argument(
            "--metrics-redis",
            metavar="URL",
            help="Redis for the completion counters (default: a private "
            "redis-server started for the run)",
        )

    def handle(self, *args, **options):
        defaults = QUICK if options["quick"] else FULL
        values = {
            key: options[key] if options[key] is not None else default
            for key, default in defaults.items()
        }
        try:
            bench = Bench(
                worker_counts=_counts(options["workers"]),
                concurrency=_positive("--concurrency", options["concurrency"]),
                only=_only(options["only"]),
                metrics_url=options["metrics_redis"],
                **{
                    key: _positive(f"--{key.replace('_', '-')}", value)
                    for key, value in values.items()
                },
            )
            bench.run()
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(render(bench))
        if bench.failure:
            raise CommandError(f"the bench did not finish: {bench.failure}")


def _positive(option, value):
    if value <= 0:
        raise CommandError(f"{option} must be positive, got {value}")
    return value


def _counts(text):
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--workers takes numbers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise CommandError(f"--workers takes positive numbers like 1,2, got {text!r}")
    return counts


def _only(text):
    if not text:
        return DEFAULT_SCENARIOS
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise CommandError(
            f"--only: unknown scenario(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(SCENARIOS)}"
        )
    return chosen
