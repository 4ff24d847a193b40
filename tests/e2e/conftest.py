"""The end-to-end lane: real worker processes, injected faults, the demo and the bench."""

from tests.fixtures import clean_redis, private_redis, redis_client, start_worker  # noqa: F401
