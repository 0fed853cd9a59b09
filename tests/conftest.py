"""Shared fixtures: the real parts every integration test runs against, each started privately.

- ``redis_server``: a ``redis-server`` process on a free port (never the machine's own Redis).
- ``dynamodb``: moto's DynamoDB server over HTTP, with boto3 pointed at it through the environment.
- ``apiserver`` / ``kube_client``: the sandbox Kubernetes API server (a local stand-in) and an official
  client for it.

``METRICS_PORT`` is 0 for the whole run (no exporter) unless a test sets a port for its processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from gco_sandbox.services import (
    SANDBOX_AWS_ENV,
    DynamoDBServer,
    RedisServer,
    start_dynamodb,
    start_redis,
)

pytest_plugins = ["tests.clusters"]  # the stand-in and the real control plane: `cluster`, `real_cluster`

# Several fleet processes run on this machine at once (each test's workers and beats, other engineers'
# runs, the in-process test workers of this one): none serves metrics on the default port. A test that
# scrapes gives its processes a free port of their own.
os.environ["METRICS_PORT"] = "0"

if TYPE_CHECKING:
    import kubernetes

    from gco_sandbox.apiserver import SandboxAPIServer


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


# --- the sandbox Kubernetes API server (issue 3) ------------------------------------------------------


@pytest.fixture(scope="session")
def apiserver_server() -> Iterator[SandboxAPIServer]:
    """The sandbox API server (a local stand-in for Kubernetes) in a thread, for the whole session.
    Readiness is fast (0.2 s) so tests that wait for it stay quick."""
    from gco_sandbox.apiserver import SandboxAPIServer

    server = SandboxAPIServer(port=0, ready_delay=0.2).start()
    yield server
    server.stop()


@pytest.fixture()
def apiserver(apiserver_server: SandboxAPIServer) -> SandboxAPIServer:
    """The sandbox API server, reset before each test: the four namespaces only, counters and faults
    cleared, readiness delay back to 0.2 s."""
    apiserver_server.reset()
    apiserver_server.store.ready_delay = 0.2
    return apiserver_server


@pytest.fixture()
def kube_client(apiserver: SandboxAPIServer) -> Iterator[kubernetes.client.ApiClient]:
    """An official ``kubernetes`` ApiClient pointed at the (reset) sandbox API server, without urllib3's
    own retries, as the fleet's client (``cluster.load_api_client``) and the real control plane's: urllib3
    would otherwise retry a 503 or 429 that carries Retry-After and hide the fault a test injected."""
    import kubernetes

    configuration = kubernetes.client.Configuration(host=apiserver.url)
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield api_client


# --- metrics (issue 14) --------------------------------------------------------------------------------


@pytest.fixture()
def fresh_metrics() -> Iterator[Any]:
    """The fleet's metrics on a fresh registry for one test; the process's own set is restored after."""
    from prometheus_client import CollectorRegistry

    from gco_tasks.adapters import metrics

    fresh = metrics.FleetMetrics.create(CollectorRegistry())
    previous = metrics.use(fresh)
    try:
        yield fresh
    finally:
        metrics.use(previous)
