"""The adapters translate their libraries' exceptions into ``gco_tasks.core.errors`` (against the real
parts): nothing above them ever sees a redis, botocore or Kubernetes client exception."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from gco_tasks.adapters.cluster import (
    ClusterGateway,
    ClusterUnavailableError,
    PermanentClusterError,
    TransientClusterError,
)
from gco_tasks.adapters.locks import RegionState, RegionStateError, RegionStateUnavailableError
from gco_tasks.adapters.store import EndpointStore, StoreUnavailableError
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import MANAGED_SELECTOR, RegionKeys
from gco_tasks.core.errors import InfrastructureError, PermanentError, TransientError
from tests.support.redisio import unreachable_redis

REGION = "us-east-1"


def test_redis_unreachable_is_transient_and_never_a_redis_exception() -> None:
    client = unreachable_redis()
    state = RegionState(client, REGION)
    with pytest.raises(RegionStateUnavailableError) as raised, state.endpoint_lock("demo", ttl_seconds=5):
        pass  # pragma: no cover - the lock cannot be taken
    assert isinstance(raised.value, TransientError)
    with pytest.raises(TransientError):
        state.mark_pending_many(["demo"], 60)
    with pytest.raises(TransientError):
        state.is_withheld("demo")


def test_a_redis_error_reply_is_infrastructure(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(RegionKeys(REGION).unready_since, "not a hash")
    with pytest.raises(RegionStateError) as raised:
        RegionState(client, REGION).unready_clocks()
    assert isinstance(raised.value, InfrastructureError)
    assert not isinstance(raised.value, redis.RedisError)
    client.close()


def test_a_refused_list_is_infrastructure_a_refused_write_permanent_a_5xx_transient(
    apiserver: Any, kube_client: Any
) -> None:
    cluster = ClusterGateway(kube_client, "gco-inference", timeout_seconds=10)
    apiserver.add_fault(verb="list", resource="deployments", status=403, count=1)
    with pytest.raises(ClusterUnavailableError) as listed:
        cluster.list_objects(MANAGED_SELECTOR)
    assert isinstance(listed.value, InfrastructureError) and listed.value.status == 403
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x", "namespace": "gco-inference"},
        "spec": {"ports": [{"port": 80}]},
    }
    apiserver.add_fault(verb="apply", resource="services", status=422, count=1)
    with pytest.raises(PermanentClusterError) as applied:
        cluster.apply(service)
    assert isinstance(applied.value, PermanentError) and applied.value.status == 422
    apiserver.add_fault(verb="apply", resource="services", status=503, count=1)
    with pytest.raises(TransientClusterError):
        cluster.apply(service)
    assert cluster.apply(service)["metadata"]["name"] == "x"


def test_a_missing_table_is_infrastructure(dynamodb_url: str) -> None:
    store = EndpointStore.from_settings(load_settings({"INFERENCE_ENDPOINTS_TABLE_NAME": "no-such-table"}))
    with pytest.raises(StoreUnavailableError) as raised:
        store.get_item("x")
    assert isinstance(raised.value, InfrastructureError) and raised.value.code == "ResourceNotFoundException"
