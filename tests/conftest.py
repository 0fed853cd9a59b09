"""Shared fixtures: the real parts every integration test runs against, each started privately.

- ``redis_server``: a ``redis-server`` process on a free port (never the machine's own Redis).
- ``dynamodb``: moto's DynamoDB server over HTTP, with boto3 pointed at it through the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gco_tasks.sandbox.services import (
    SANDBOX_AWS_ENV,
    DynamoDBServer,
    RedisServer,
    start_dynamodb,
    start_redis,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private Redis, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def dynamodb_server() -> Iterator[DynamoDBServer]:
    saved = {key: os.environ.get(key) for key in [*SANDBOX_AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB"]}
    server = start_dynamodb()
    os.environ.update(SANDBOX_AWS_ENV)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.url
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture()
def dynamodb_url(dynamodb_server: DynamoDBServer) -> Iterator[str]:
    """moto's server, reset (every table dropped) before each test."""
    import urllib.request

    request = urllib.request.Request(f"{dynamodb_server.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    yield dynamodb_server.url
