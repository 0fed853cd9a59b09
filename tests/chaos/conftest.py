"""Fixtures of the chaos suite: one region's fleet as real processes against a Redis the test can kill,
moto's DynamoDB over HTTP and the sandbox Kubernetes API server, with short intervals and leases so
that every scenario takes seconds.

Every scenario is marked ``chaos`` (registered in pyproject.toml, part of the default run) and reports
the recovery times it measured; they are printed at the end of the run under "chaos: measured recovery"
and, when ``GCO_CHAOS_RECORD`` names a file, appended to it as JSON lines (``bench/recovery.py``).
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gco_sandbox.services import SANDBOX_AWS_ENV
from gco_tasks.adapters.cluster import ClusterGateway
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import Settings, load_settings
from gco_tasks.core.records import Endpoint, parse_spec

from .faultproxy import KubernetesFaultProxy
from .harness import REGION, FleetProcesses, RedisNode, wait_until
from .invariants import Scenario, assert_nothing_lost, table_items

#: What the chaos processes run with: intervals of seconds, leases and beat locks of a few seconds.
FAST_SETTINGS = {
    "REGION": REGION,
    "RECONCILE_INTERVAL_SECONDS": "2",
    "WATCHDOG_INTERVAL_SECONDS": "30",
    "PURGE_INTERVAL_SECONDS": "2",
    "LOCK_LEASE_SECONDS": "2",
    "HEARTBEAT_INTERVAL_SECONDS": "1",
    "BEAT_LOCK_TIMEOUT_SECONDS": "4",
    "TASK_SOFT_TIME_LIMIT_SECONDS": "20",
    "TASK_TIME_LIMIT_SECONDS": "25",
    "TASK_MAX_RETRIES": "8",
    "K8S_API_TIMEOUT": "3",
    "DYNAMODB_CONNECT_TIMEOUT_SECONDS": "1",
    "DYNAMODB_READ_TIMEOUT_SECONDS": "1",
    "DYNAMODB_MAX_ATTEMPTS": "3",
    "METRICS_PORT": "0",
}

MEASURED: list[tuple[str, str, float]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("chaos: measured recovery")
        for test, what, seconds in MEASURED:
            terminalreporter.write_line(f"{seconds:6.1f} s  {what}  ({test})")


@dataclass
class Chaos:
    """One scenario's region: its settings (as the processes read them), the table, the cluster, the
    fleet's processes, and what the scenario asked of each endpoint (for the final count)."""

    env: dict[str, str]
    settings: Settings
    store: EndpointStore
    cluster: ClusterGateway
    processes: FleetProcesses
    apiserver: Any
    test: str
    dynamodb_url: str
    intents: dict[str, str] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)
    stalls_end: float = 0.0  # when the last stalled API request is over (see stall_apply)

    def stall_apply(self, name: str, seconds: float) -> None:
        """The next server-side apply of ``name``'s Deployment hangs ``seconds`` inside the API server
        (then goes through). The fixture waits for it at the end, so it never lands in another test."""
        self.apiserver.add_fault(
            verb="apply", resource="deployments", name=name, delay_ms=int(seconds * 1000)
        )
        self.stalls_end = max(self.stalls_end, time.monotonic() + seconds + 2)

    def stall_begun(self) -> bool:
        """Every stall armed has begun (the stand-in uses a fault up when the request arrives)."""
        return not self.apiserver.faults.list()

    def deploy(self, *names: str, image: str = "nginx:1.27", **spec: Any) -> None:
        """Records that set every field the final check compares (``record_spec``), plus ``spec``."""
        for name in names:
            full = {**record_spec(name, image), **spec}
            self.store.create(Endpoint.new(name, parse_spec(full), [REGION]))
            self.intents[name] = "running"

    def break_record(self, name: str) -> None:
        """Write ``name`` as another tool might, malformed (a port that is not a number): the one kind of
        record allowed to end in ``error`` (with a reason)."""
        item: dict[str, Any] = {"endpoint_name": name, "desired_state": "running", "target_regions": [REGION]}
        item["spec"] = {"image": "nginx:1.27", "port": "eighty"}
        self.store.client.put_item(TableName=self.store.table_name, Item=_typed(item))
        self.intents[name] = "running"
        self.invalid.add(name)

    def scale(self, name: str, replicas: int) -> None:
        self.store.scale(name, replicas)

    def stop(self, name: str) -> None:
        """``gco-tasks endpoints stop``: the desired state only (the CLI's conditional write)."""
        assert self.store.update_desired_state(name, "stopped"), f"{name}: stop not written"
        self.intents[name] = "stopped"

    def delete(self, name: str) -> None:
        """``gco-tasks endpoints delete``: marked deleted; the fleet removes the objects, then purges."""
        assert self.store.update_desired_state(name, "deleted"), f"{name}: delete not written"
        self.intents[name] = "deleted"

    def state(self, name: str) -> str | None:
        item = self.store.get_item(name) or {}
        return ((item.get("region_status") or {}).get(REGION) or {}).get("state")

    def objects(self, name: str | None = None) -> list[str]:
        selector = f"gco.io/endpoint={name}" if name else "gco.io/type=inference"
        return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in self.cluster.list_objects(selector))

    def converged(self, *names: str) -> bool:
        return all(self.state(name) == "running" for name in names)

    def record(self, what: str, seconds: float, claim: float | None = None) -> float:
        """Note a recovery time; ``claim``: the product's tight figure for it (what bench/recovery.py
        compares the measurements with; the test itself asserts only a generous bound)."""
        MEASURED.append((self.test, what, seconds))
        target = os.environ.get("GCO_CHAOS_RECORD")
        if target:
            line = {"test": self.test, "what": what, "seconds": round(seconds, 3), "claim": claim}
            with open(target, "a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        return seconds

    def nothing_lost(self, timeout: float = 30.0) -> float:
        """Wait until the table and the live objects agree on every endpoint (``invariants.py``)."""
        scenario = Scenario(
            self.settings.region,
            self.settings.inference_namespace,
            dict(self.intents),
            frozenset(self.invalid),
        )
        table = self.settings.inference_endpoints_table_name

        def items() -> list[dict[str, Any]]:
            return table_items(table, self.dynamodb_url, self.settings.table_region)

        return assert_nothing_lost(
            items, self.cluster.api_client, scenario, timeout, self.processes.logs_text
        )


def record_spec(name: str, image: str) -> dict[str, Any]:
    """A spec that sets what ``invariants.py`` checks on the live objects: env, args, port, resources."""
    return {
        "image": image,
        "port": 8080,
        "env": {"MODEL": name, "LOG_LEVEL": "info"},
        "args": ["--model", f"/models/{name}"],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in item.items()}


@pytest.fixture()
def redis_node(tmp_path: Path) -> Iterator[RedisNode]:
    """A private redis-server that keeps nothing on disk, killable and restartable on its port."""
    node = RedisNode(tmp_path / "redis").start()
    yield node
    node.stop()


def fleet_env(redis_url: str, kubeconfig: Path, dynamodb_url: str, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBE", "REDIS"))}
    env.update(SANDBOX_AWS_ENV)
    env.update(FAST_SETTINGS)
    env.update(
        REDIS_URL=redis_url,
        KUBECONFIG=str(kubeconfig),
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_url,
        WORKER_HEARTBEAT_FILE=str(tmp_path / "worker.heartbeat"),
        BEAT_HEARTBEAT_FILE=str(tmp_path / "beat.heartbeat"),
    )
    return env


def _api_server(
    request: pytest.FixtureRequest, tmp_path: Path, proxies: list[KubernetesFaultProxy]
) -> tuple[Path, Any, Any]:
    """(the fleet's kubeconfig, a direct API client for the checks, where faults are armed): the
    ``cluster`` fixture's server when the test asks for it (``tests/clusters.py``: both servers, or one
    with ``standin_only``/``real_only``), else the stand-in. The real control plane is reached through a
    ``KubernetesFaultProxy`` (its answers, plus the faults a scenario arms); the stand-in arms its own."""
    if "cluster" in request.fixturenames:
        chosen = request.getfixturevalue("cluster")
        if chosen.plane is None:
            return chosen.kubeconfig, chosen.api_client, chosen.standin
        context = ssl.create_default_context(cafile=str(chosen.plane.pki.ca_cert))
        context.load_cert_chain(
            str(chosen.plane.pki.client_cert("admin")), str(chosen.plane.pki.client_key("admin"))
        )
        proxy = KubernetesFaultProxy(chosen.plane.url, context).start()
        proxies.append(proxy)
        return proxy.write_kubeconfig(tmp_path / "kubeconfig-proxy.yaml"), chosen.api_client, proxy
    apiserver = request.getfixturevalue("apiserver")
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    return kubeconfig, request.getfixturevalue("kube_client"), apiserver


@pytest.fixture()
def make_chaos(request: pytest.FixtureRequest, tmp_path: Path, dynamodb_url: str) -> Iterator[Any]:
    """Build the scenario's region for a given ``REDIS_URL`` (and extra settings); its processes are
    stopped when the test ends, whatever happened."""
    built: list[Chaos] = []
    proxies: list[KubernetesFaultProxy] = []

    def make(redis_url: str, **overrides: str) -> Chaos:
        kubeconfig, api_client, faults = _api_server(request, tmp_path, proxies)
        env = {**fleet_env(redis_url, kubeconfig, dynamodb_url, tmp_path), **overrides}
        settings = load_settings(env)
        store = EndpointStore.from_settings(load_settings(env, dynamodb_read_timeout_seconds=10))
        store.create_table()
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        cluster = ClusterGateway(api_client, settings.inference_namespace, 10)
        processes = FleetProcesses(env, logs)
        chaos = Chaos(env, settings, store, cluster, processes, faults, request.node.name, dynamodb_url)
        built.append(chaos)
        return chaos

    yield make
    for chaos in built:
        chaos.processes.stop_all()
    # A stalled request still sleeping in the (shared) API server must not land in the next test.
    stalls_end = max((chaos.stalls_end for chaos in built), default=0.0)
    wait_until(lambda: time.monotonic() >= stalls_end, 60, "stalled API requests to finish", 0.2)
    for proxy in proxies:
        proxy.stop()


@pytest.fixture()
def chaos(make_chaos: Any, redis_node: RedisNode) -> Chaos:
    """The usual region: a Redis without persistence."""
    built: Chaos = make_chaos(redis_node.url)
    return built
