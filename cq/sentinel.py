"""A Sentinel-backed Django cache, for task logs (CQ_CACHE) on a Sentinel-managed Redis.

Django's RedisCache knows no Sentinel, but it builds each of its pools with
`OPTIONS["pool_class"].from_url(LOCATION, **other OPTIONS)`. This pool reads
the master's name from LOCATION's host (as django-redis does:
"redis://mymaster/0") and asks the `sentinels` of OPTIONS where that master is,
again after every failover::

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://mymaster/0",
            "OPTIONS": {
                "pool_class": "cq.sentinel.SentinelPool",
                "sentinels": [("sentinel-1", 26379), ("sentinel-2", 26379)],
                "socket_timeout": 5,
                "socket_connect_timeout": 5,
            },
        },
    }

Give LOCATION one master only: RedisCache reads from a random one of several.
"""

from typing import Any

import redis.sentinel
from redis.connection import SSLConnection, parse_url


class SentinelPool(redis.sentinel.SentinelConnectionPool):
    """redis-py's Sentinel pool, built from a URL the way Django builds its pools."""

    @classmethod
    def from_url(  # type: ignore[override]
        cls,
        url: str,
        *,
        sentinels: list[tuple[str, int]],
        sentinel_kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> "SentinelPool":
        kwargs = parse_url(url)
        master_name = kwargs.pop("host", None)
        if not master_name:
            raise ValueError(
                f"name the Sentinel master as LOCATION's host, e.g. redis://mymaster/0, not {url!r}"
            )
        kwargs.pop("port", None)  # Sentinel says where the master is
        if kwargs.pop("connection_class", None) is SSLConnection:
            kwargs["ssl"] = True
        if sentinel_kwargs is None:
            # The sentinels get the same deadlines as the master: a hung
            # sentinel must not hang a task that logs either.
            sentinel_kwargs = {k: v for k, v in options.items() if k.startswith("socket_")}
        sentinel = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
        return cls(master_name, sentinel, **kwargs, **options)
