"""The test settings plus the benchmark's app (bench/), for tests/e2e/test_bench.py:
only processes started with these settings know the `cq_bench` command."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]  # noqa: F405
