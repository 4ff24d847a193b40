"""The integration lane: the database and real Redis, in this process."""

from tests.fixtures import clean_redis, redis_client, two_shards  # noqa: F401
