"""What the fleet benchmark's sections share: the region and images, the endpoint mix, the private
services (redis-server, moto's DynamoDB, the sandbox API server) and a ``Fleet`` on them, and summary
statistics."""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gco_sandbox.apiserver import SandboxAPIServer
from gco_sandbox.services import (
    SANDBOX_AWS_ENV,
    DynamoDBServer,
    RedisServer,
    start_dynamodb,
    start_redis,
)
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import cycle_queue_for_region, queue_for_region
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet

REGION = "us-east-1"
QUEUE = queue_for_region(REGION)
#: Where beat sends the fan-out (consumed before ``QUEUE``).
CYCLE_QUEUE = cycle_queue_for_region(REGION)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

IMAGE = "vllm/vllm-openai:v0.6.3"
NEW_IMAGE = "vllm/vllm-openai:v0.6.4"
CANARY_IMAGE = "vllm/vllm-openai:v0.7.0"

K8S_WRITE_VERBS = frozenset({"create", "update", "patch", "apply", "delete"})
DYNAMO_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})

#: GCO's monitor, per endpoint per cycle, from its documented behaviour (upstream-behaviour.md, defect 11).
ORIGINAL_GETS = 3
ORIGINAL_DELETES_404 = 2
ORIGINAL_DYNAMO_WRITES = 1
ORIGINAL_INTERVAL_SECONDS = 15

log = logging.getLogger("bench.fleet")


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class BenchEndpoint:
    name: str
    kind: str  # plain | canary | autoscaling | stopped
    spec: dict[str, Any]


def endpoint_mix(count: int) -> list[BenchEndpoint]:
    """``count`` endpoints: index % 10 == 0 with a 20 % canary, == 1 autoscaling, the last one stopped,
    the rest plain (one GPU, one replica)."""
    mix: list[BenchEndpoint] = []
    for index in range(count):
        name = f"bench-{index:04d}"
        spec: dict[str, Any] = {"image": IMAGE, "replicas": 1}
        if count > 1 and index == count - 1:
            kind = "stopped"
        elif index % 10 == 0:
            kind = "canary"
            spec["canary"] = {"image": CANARY_IMAGE, "weight": 20}
        elif index % 10 == 1:
            kind = "autoscaling"
            spec["autoscaling"] = {
                "enabled": True,
                "min_replicas": 1,
                "max_replicas": 4,
                "metrics": [{"type": "cpu", "target": 70}],
            }
        else:
            kind = "plain"
        mix.append(BenchEndpoint(name, kind, spec))
    return mix


def create_records(store: EndpointStore, mix: Sequence[BenchEndpoint]) -> None:
    for endpoint in mix:
        store.create(Endpoint.new(endpoint.name, parse_spec(endpoint.spec), [REGION]))
        if endpoint.kind == "stopped":
            store.update_desired_state(endpoint.name, "stopped")


def settled(store: EndpointStore, mix: Sequence[BenchEndpoint]) -> bool:
    """Every endpoint reports its final state here (running, or stopped) and was promoted to running."""
    items = {item["endpoint_name"]: item for item in store.scan_items()}
    for endpoint in mix:
        item = items.get(endpoint.name) or {}
        state = (item.get("region_status", {}).get(REGION) or {}).get("state")
        if endpoint.kind == "stopped":
            if state != "stopped":
                return False
        elif state != "running" or item.get("desired_state") != "running":
            return False
    return True


# --------------------------------------------------------------------------- services and the fleet


@dataclass
class Services:
    """The private backing services of one bench run."""

    redis: RedisServer
    dynamodb: DynamoDBServer
    apiserver: SandboxAPIServer
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    def env(self) -> dict[str, str]:
        """What a worker process (and this one) needs to reach them."""
        return {
            **SANDBOX_AWS_ENV,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.url,
            "REGION": REGION,
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.kubeconfig),
            "RECONCILE_INTERVAL_SECONDS": "15",
            "WORKER_HEARTBEAT_FILE": str(self.workdir / "worker.heartbeat"),
        }


@contextmanager
def running_services(ready_delay: float) -> Iterator[Services]:
    """Start the services and point this process's environment at them (boto3 and, later, the Celery
    app read it)."""
    with tempfile.TemporaryDirectory(prefix="gco-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = start_redis(workdir=workdir)
        dynamodb = start_dynamodb()
        apiserver = SandboxAPIServer(port=0, ready_delay=ready_delay).start()
        services = Services(redis_server, dynamodb, apiserver, workdir)
        apiserver.write_kubeconfig(services.kubeconfig)
        for key in [key for key in os.environ if key.startswith(("KUBE", "REDIS"))]:
            del os.environ[key]
        os.environ.update(services.env())
        try:
            yield services
        finally:
            apiserver.stop()
            dynamodb.stop()
            redis_server.stop()


def make_fleet(redis_url: str, kube_client: Any, region: str = REGION, **settings: Any) -> Fleet:
    """A Fleet on the given Redis and Kubernetes client."""
    values: dict[str, Any] = {"region": region, "redis_url": redis_url, "reconcile_interval_seconds": 15}
    values.update(settings)
    return Fleet.from_settings(load_settings({}, **values), api_client=kube_client)


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "median": round(statistics.median(seconds) * 1000, 2),
        "p95": round(percentile(seconds, 95) * 1000, 2),
        "p99": round(percentile(seconds, 99) * 1000, 2),
        "max": round(max(seconds) * 1000, 2),
    }


def median_counts(costs: Sequence[dict[str, int]]) -> dict[str, float]:
    keys = sorted({key for cost in costs for key in cost})
    return {key: statistics.median(cost.get(key, 0) for cost in costs) for key in keys}
