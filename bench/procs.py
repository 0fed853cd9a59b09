"""The scale benchmark's services, each in a process of its own (a ``redis-server``, moto's DynamoDB
counting its calls, the sandbox API server, a local stand-in), so the worker processes, the services and
the benchmark's own bookkeeping do not share one interpreter; and fast seeding of the table.

Where it stands: beside the fleet (``bench.scale`` drives it). Counters are read over HTTP:
``/_sandbox/stats`` (Kubernetes requests by verb and resource) and ``/_bench/stats`` (DynamoDB calls by
operation, with moto's own time on them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from kubernetes import client

from bench.common import PROJECT_ROOT, REGION, BenchEndpoint
from gco_sandbox.services import SANDBOX_AWS_ENV, RedisServer, free_port, start_redis, wait_for_port
from gco_tasks.adapters.dynamo_client import encode
from gco_tasks.core.records import Endpoint, parse_spec

TABLE = "gco-inference-endpoints"


def _http(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class StandinCluster:
    """The sandbox API server (a local stand-in) in its own process; its own request counters."""

    def __init__(self, port: int, kubeconfig: Path, pid: int) -> None:
        self.url, self.kubeconfig = f"http://127.0.0.1:{port}", kubeconfig
        self.pids = {"stand-in API server": pid}

    def stats(self) -> dict[str, int]:
        return dict(_http(f"{self.url}/_sandbox/stats"))

    def reset(self) -> None:
        _http(f"{self.url}/_sandbox/stats/reset", "POST")


class RealCluster:
    """The real control plane (kube-apiserver 1.36, controllers, scheduler, kwok). Requests counted from
    kube-apiserver's ``apiserver_request_total``: the verbs the fleet uses (LIST, GET, APPLY, PATCH,
    DELETE) on the four kinds it manages, main resource only (the controllers write status, and UPDATE
    the Deployment's revision annotation: left out)."""

    KINDS = ("deployments", "services", "ingresses", "horizontalpodautoscalers")
    VERBS = ("LIST", "GET", "APPLY", "PATCH", "DELETE")

    def __init__(self, plane: Any) -> None:
        self.plane, self.kubeconfig = plane, plane.kubeconfig
        self.api = plane.api_client()
        self.pids = {child.name: child.pid for child in plane.children.started}
        self.base: Counter[str] = Counter()

    def _read(self) -> Counter[str]:
        method, url, headers, _, _ = self.api.param_serialize(method="GET", resource_path="/metrics")
        text = self.api.call_api(method, url, header_params=headers).read().decode()
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            ours = labels.get("resource") in self.KINDS and labels.get("verb") in self.VERBS
            if ours and not labels.get("subresource"):
                key = f"{labels['verb'].lower()} {labels['resource']}"
                counts[key] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def stats(self) -> dict[str, int]:
        current = self._read()
        current.subtract(self.base)
        return {key: n for key, n in sorted(current.items()) if n}

    def reset(self) -> None:
        self.base = self._read()


@dataclass
class ProcServices:
    """Redis, moto and a Kubernetes API server, each in processes of their own, and how to reach and
    count them."""

    redis: RedisServer
    moto_port: int
    cluster: StandinCluster | RealCluster
    workdir: Path
    moto_pid: int

    def component_pids(self) -> dict[str, int]:
        """The services' processes, to read their CPU use."""
        return {"redis": self.redis.process.pid, "moto": self.moto_pid, **self.cluster.pids}

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def dynamodb_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def env(self, **settings: str) -> dict[str, str]:
        """What a worker process (or this one) needs: the services plus the fleet ``settings`` given."""
        return {
            **SANDBOX_AWS_ENV,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
            "REGION": REGION,
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.kubeconfig),
            "WORKER_HEARTBEAT_FILE": str(self.workdir / "worker.heartbeat"),
            "METRICS_PORT": "0",
            # moto answers a 1 MB Scan page of a 10,000-record table in several seconds (DynamoDB in well
            # under one): the production bound of 5 s would time the fan-out's Scan out here
            "DYNAMODB_READ_TIMEOUT_SECONDS": "120",
            **settings,
        }

    def k8s_stats(self) -> dict[str, int]:
        return self.cluster.stats()

    def k8s_reset(self) -> None:
        self.cluster.reset()

    def dynamo_stats(self) -> dict[str, dict[str, float]]:
        return dict(_http(f"{self.dynamodb_url}/_bench/stats"))

    def dynamo_reset(self) -> None:
        _http(f"{self.dynamodb_url}/_bench/reset", "POST")

    def client(self) -> Any:
        return boto3.client("dynamodb", region_name=REGION, endpoint_url=self.dynamodb_url)


def _spawn(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def process_services(
    workdir: Path, ready_delay: float, real_gpus: int = 0, validate: bool = True
) -> Iterator[ProcServices]:
    """Start Redis, moto and the stand-in (or, ``real_gpus`` > 0, the real control plane with fake GPU
    nodes added until it has that many NVIDIA GPUs) on free ports; stop them on the way out. ``validate``
    False: the stand-in skips its OpenAPI schema validation (~half of its time per write)."""
    with ExitStack() as stack:
        redis_server = start_redis(workdir=workdir)
        stack.callback(redis_server.stop)
        moto_port = free_port()
        moto = _spawn(
            [sys.executable, "-m", "bench.motoserver", "--port", str(moto_port)], workdir / "moto.log"
        )
        stack.callback(_stop, moto)
        if real_gpus:
            cluster: StandinCluster | RealCluster = _real(stack, workdir, real_gpus)
        else:
            cluster = _standin(stack, workdir, ready_delay, validate)
        wait_for_port(moto_port, timeout=60)
        yield ProcServices(redis_server, moto_port, cluster, workdir, moto.pid)


def _standin(stack: ExitStack, workdir: Path, ready_delay: float, validate: bool) -> StandinCluster:
    port, kubeconfig = free_port(), workdir / "kubeconfig.yaml"
    argv = [sys.executable, "-m", "gco_tasks.cli.main", "sandbox", "apiserver", "--port", str(port),
            "--kubeconfig", str(kubeconfig), "--ready-delay", str(ready_delay)]  # fmt: skip
    api = _spawn(argv if validate else [*argv, "--k8s-version", ""], workdir / "apiserver.log")
    stack.callback(_stop, api)
    wait_for_port(port, timeout=60)
    deadline = time.monotonic() + 30
    while not kubeconfig.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return StandinCluster(port, kubeconfig, api.pid)


def _real(stack: ExitStack, workdir: Path, gpus: int) -> RealCluster:
    from gco_sandbox.controlplane import FAKE_NODES, ControlPlane, FakeNode, raw

    plane = ControlPlane.start(workdir / "controlplane")
    stack.callback(plane.stop)
    have = sum(node.devices for node in FAKE_NODES if node.accelerator == "nvidia")
    with plane.api_client() as api:
        core = client.CoreV1Api(api)
        for index in range(max(0, -(-(gpus - have) // 8))):
            raw(
                core.create_node,
                FakeNode(f"gpu-bench-{index}", "p5.48xlarge", "on-demand", "nvidia", 8).manifest(),
            )
    return RealCluster(plane)


def create_table(client: Any) -> None:
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "endpoint_name", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "endpoint_name", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def seed_records(client: Any, mix: Sequence[BenchEndpoint]) -> float:
    """Write the records of ``mix`` with BatchWriteItem (25 a call), as the CLI would have created them
    (the stopped one already ``stopped``); returns the seconds it took."""
    began = time.perf_counter()
    items = []
    for endpoint in mix:
        item = Endpoint.new(endpoint.name, parse_spec(endpoint.spec), [REGION]).to_item()
        if endpoint.kind == "stopped":
            item["desired_state"] = "stopped"
        items.append({"PutRequest": {"Item": encode(item)["M"]}})
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {TABLE: items[start : start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return time.perf_counter() - began


def pool_pids(pid: int) -> list[int]:
    """The worker's pool processes (its children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def cpu_seconds(pids: Sequence[int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[str(pid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


def rss_of_tree(pid: int) -> dict[str, dict[str, int]]:
    """VmRSS and VmHWM (peak) in MB of ``pid`` and each of its children (the worker's pool processes)."""
    found: dict[str, dict[str, int]] = {}
    for each in [pid, *pool_pids(pid)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        found[str(each)] = {
            key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM") if key in fields
        }
    return found
