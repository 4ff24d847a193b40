"""cq's benchmark: `make bench`, or `python -m django cq_bench --settings bench.settings_pg`
(see docs/performance.md). A Django app of its own, outside the `cq` package: it is
not in the wheel, and only settings that install "bench" see the `cq_bench` command.

Modules: `tasks` (the no-op task), `metrics` (completion counters on a Redis of
their own), `workers` (real `runworker` subprocesses), `probes` (database and
Redis counters, worker memory), `sqlcount` (statements counted in-process),
`scenarios` (what is measured), `runner` (order, time bound, clean-up),
`report` (the table).
"""
