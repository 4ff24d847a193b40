"""cq's benchmark: `python -m django cq_bench --settings ...` (see docs/performance.md).

Modules: `tasks` (the no-op task), `metrics` (completion counters on a Redis of
their own), `workers` (real `runworker` subprocesses), `probes` (database and
Redis counters, worker memory), `sqlcount` (statements counted in-process),
`scenarios` (what is measured), `runner` (order, time bound, clean-up),
`report` (the table).
"""
