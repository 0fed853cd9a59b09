"""Redis clients for tests: one to a URL that is closed after use, and fail-fast ones (one attempt, 1 s
timeouts) for the errors an unreachable or stopped Redis gives."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gco_sandbox.services import free_port


@contextmanager
def redis_at(url: str, **options: Any) -> Iterator[redis.Redis]:
    """A client of ``url``, closed when the block ends."""
    client = redis.Redis.from_url(url, **options)
    try:
        yield client
    finally:
        client.close()


def fail_fast_client(port: int) -> redis.Redis:
    """A client of 127.0.0.1:``port`` that tries once with 1 s timeouts (redis-py's own retries would
    only make a test of a lost Redis slow)."""
    no_retry = Retry(NoBackoff(), 0)
    return redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1, retry=no_retry)


def unreachable_redis() -> redis.Redis:
    """A fail-fast client of a free port, where nothing listens."""
    return fail_fast_client(free_port())
