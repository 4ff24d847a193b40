"""The end-to-end lane: real worker processes, injected faults, the demo and the bench."""

from tests.fixtures import (  # noqa: F401
    clean_redis,
    heavy_turn,
    private_redis,
    redis_client,
    start_worker,
    two_shards,
)
