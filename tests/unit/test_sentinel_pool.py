"""cq.sentinel.SentinelPool: Django's RedisCache builds it from LOCATION and
OPTIONS (nothing connects here; tests/e2e/test_sentinel.py fails over one)."""

import pytest
import redis.sentinel
from django.core.cache.backends.redis import RedisCache

from cq.sentinel import SentinelPool


def test_redis_cache_builds_a_sentinel_pool_from_location_and_options():
    cache = RedisCache(
        "redis://:s3cret@mymaster/3",
        {
            "OPTIONS": {
                "pool_class": "cq.sentinel.SentinelPool",
                "sentinels": [("s1", 26379), ("s2", 26380)],
                "socket_timeout": 5,
            }
        },
    )
    pool = cache._cache._get_connection_pool(write=True)

    assert isinstance(pool, SentinelPool)
    assert pool.service_name == "mymaster" and pool.is_master
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["socket_timeout"] == 5
    assert pool.connection_class is redis.sentinel.SentinelManagedConnection
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    # A hung sentinel must not hang a task that logs either.
    assert all(s.connection_pool.connection_kwargs["socket_timeout"] == 5 for s in sentinels)


def test_a_rediss_location_gives_tls_connections_to_the_master():
    pool = SentinelPool.from_url("rediss://mymaster/0", sentinels=[("s1", 26379)])
    assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection


def test_a_location_without_a_master_name_is_refused():
    with pytest.raises(ValueError, match="name the Sentinel master"):
        SentinelPool.from_url("redis:///0", sentinels=[("s1", 26379)])
