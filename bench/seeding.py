"""A converged region made by the benchmark itself, without a cold start: every endpoint's objects
applied straight to the cluster, and each record written with the status a reconcile would have
reported (``bench.scale run --seeded``).

Where it stands: beside the fleet, used by ``bench.scale`` instead of its cold start when only steady
cycles, a change and the probe are wanted at a large N (a cold start of 10,000 endpoints takes about
25 minutes here). The statuses' ``last_sync`` are as a steady fleet leaves them: each endpoint last
written at its own resync slot (``triage.resync_due``), so heartbeats come due at the rate they would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.common import REGION, BenchEndpoint
from bench.procs import TABLE
from gco_tasks.adapters.cluster import ClusterGateway, load_api_client
from gco_tasks.adapters.dynamo_client import encode
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import MANAGED_SELECTOR
from gco_tasks.core.diagnosis import judge_rollouts as digest_rollouts
from gco_tasks.core.drift import digest
from gco_tasks.core.plan import endpoint_name_of
from gco_tasks.core.records import Endpoint, RecordHeader, parse_spec
from gco_tasks.core.rendering import RenderOptions, desired_objects, object_key
from gco_tasks.core.status import outcome_of, region_status_of, status_report
from gco_tasks.core.teardown import plan_around_terminating
from gco_tasks.core.triage import resync_cycles, resync_due

INTERVAL, HEARTBEAT = 15, 300


def last_sync_for(name: str, now: float) -> str:
    """When a steady fleet last wrote ``name``'s status: its most recent resync slot, a full resync
    period ago when that slot is now."""
    cycles = resync_cycles(HEARTBEAT, INTERVAL)
    back = 1
    while not resync_due(name, now - back * INTERVAL, INTERVAL, cycles):
        back += 1
    return datetime.fromtimestamp(now - back * INTERVAL, UTC).isoformat()


def seed_converged(client: Any, mix: Sequence[BenchEndpoint], threads: int = 8) -> dict[str, float]:
    """Apply every endpoint's objects, wait for every Deployment to be ready, then write the records
    with their statuses (BatchWriteItem). Returns the seconds each step took."""
    settings = load_settings()
    options = RenderOptions(namespace=settings.inference_namespace)
    gateway = ClusterGateway(load_api_client(), settings.inference_namespace, timeout_seconds=120)
    items: dict[str, dict[str, Any]] = {}
    objects: list[dict[str, Any]] = []
    for bench in mix:
        item = Endpoint.new(bench.name, parse_spec(bench.spec), [REGION]).to_item()
        item["desired_state"] = "stopped" if bench.kind == "stopped" else "running"
        items[bench.name] = item
        objects.extend(desired_objects(Endpoint.from_item(item), REGION, options))
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(gateway.apply, objects))
    applied = time.perf_counter() - began
    deadline = time.monotonic() + 600
    while True:
        deployments = gateway.list_objects(MANAGED_SELECTOR, ["Deployment"])
        waiting = [d for d in deployments if not _ready(d)]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"seeding: {len(waiting)} Deployments not ready")
        time.sleep(2.0)
    ready = time.perf_counter() - began - applied
    grouped: dict[str, list[dict[str, Any]]] = {}
    for obj in gateway.list_objects(MANAGED_SELECTOR):
        name = endpoint_name_of(obj, set(items))
        if name is not None:
            grouped.setdefault(name, []).append(obj)
    now = time.time()
    requests = []
    for name, item in items.items():
        status = _status(item, grouped.get(name, []), options)
        status["last_sync"] = last_sync_for(name, now)
        item["region_status"] = {REGION: status}
        requests.append({"PutRequest": {"Item": encode(item)["M"]}})
    for start in range(0, len(requests), 25):
        pending: dict[str, Any] = {TABLE: requests[start : start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return {
        "objects": len(objects),
        "apply_seconds": round(applied, 1),
        "ready_seconds": round(ready, 1),
        "table_seconds": round(time.perf_counter() - began - applied - ready, 1),
    }


def _ready(deployment: dict[str, Any]) -> bool:
    want = (deployment.get("spec") or {}).get("replicas", 1)
    return int((deployment.get("status") or {}).get("readyReplicas") or 0) >= int(want or 0)


def _status(item: dict[str, Any], live: list[dict[str, Any]], options: RenderOptions) -> dict[str, Any]:
    endpoint = Endpoint.from_item(item)
    wanted = {object_key(o): o for o in desired_objects(endpoint, REGION, options)}
    observed = [digest(obj, wanted.get(object_key(obj))) for obj in live]
    plan, _ = plan_around_terminating(list(wanted.values()), observed)
    if not plan.is_empty:
        raise RuntimeError(f"seeding: {endpoint.endpoint_name} is not converged: {plan}")
    outcome = outcome_of(endpoint, REGION, observed, plan, None, (), digest_rollouts(observed))
    report = status_report(outcome)
    if report is None:
        raise RuntimeError(f"seeding: no status for {endpoint.endpoint_name}")
    return region_status_of(report, RecordHeader.from_item(item).updated_at).to_dict()
