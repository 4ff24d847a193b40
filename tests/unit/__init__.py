"""The unit lane: no Redis and no worker process (a database where a test asks for
one). Its conftest imports no Redis fixture; `make test-unit` runs it with Redis
unreachable to prove it."""
