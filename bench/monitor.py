"""A model of GCO's ``inference-monitor`` (GCO v2.0.0) for the side-by-side benchmark: its loop, its calls
in their order, its DynamoDB writes, on the same services as the fleet.

Where it stands: beside the fleet, never imported by it; ``bench.sidebyside`` runs it as a process of its
own (as the monitor's pod would be) with ``python -m bench.monitor``. Written from the monitor's
documented behaviour, not its code; the objects are those ``tests/integration/gco_monitor.py`` renders.

What it does, as the original: one leader-lease read and renewal per cycle, then ONE Scan of the table
(no pagination: a table past 1 MB is cut, the journal says so), then each endpoint in turn (the
original's coroutines await nothing asynchronous: every Kubernetes and DynamoDB call blocks, so one
endpoint at a time, one request at a time), through the official Python client's typed calls (its
models deserialized from every answer); a status write per endpoint per cycle; the purge of deleted
records; then a sleep of ``RECONCILE_INTERVAL_SECONDS`` after the cycle (so a cycle starts every
interval + the cycle's own time). A new endpoint is created in one cycle (status ``creating``) and
seen ``running`` by the next.

The journal (``--journal``, JSON lines) is how the benchmark watches it: every status write (endpoint,
state, time), every image patch, and every cycle (start, end, endpoints, whether the Scan was cut).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration import gco_monitor as render

log = logging.getLogger("bench.monitor")

LEASE = "inference-monitor-leader"
ROOT_PATH_IMAGES = render.ROOT_PATH_IMAGES


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as int or float, as the original store returns items."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class Journal:
    """One JSON line per thing the benchmark watches, flushed at once (the benchmark tails the file)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1)
        self.lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        with self.lock:
            self.file.write(json.dumps({"t": time.time(), "kind": kind, **fields}) + "\n")


class Store:
    """The original store's calls: one Scan for the list, an UpdateItem per status, conditional writes
    for the desired state and the purge."""

    def __init__(self, table_name: str, region: str) -> None:
        self.table = boto3.resource("dynamodb", region_name=region).Table(table_name)

    def list_endpoints(self) -> tuple[list[dict[str, Any]], bool]:
        """One Scan, not paginated (the original's defect 9); whether the table was cut."""
        answer = self.table.scan()
        items = [plain(item) for item in answer.get("Items", [])]
        items.sort(key=lambda item: str(item.get("created_at", "")), reverse=True)
        return items, "LastEvaluatedKey" in answer

    def update_region_status(
        self,
        name: str,
        region: str,
        state: str,
        replicas_ready: int = 0,
        replicas_desired: int = 0,
        error: str | None = None,
    ) -> None:
        now = datetime.now(UTC).isoformat()
        status: dict[str, Any] = {
            "state": state,
            "replicas_ready": replicas_ready,
            "replicas_desired": replicas_desired,
            "last_sync": now,
        }
        if error:
            status["error"] = error
        try:
            self.table.update_item(
                Key={"endpoint_name": name},
                UpdateExpression="SET region_status.#r = :s, updated_at = :u",
                ExpressionAttributeNames={"#r": region},
                ExpressionAttributeValues={":s": status, ":u": now},
            )
        except Exception as exc:  # the original logs and swallows it
            log.error("Failed to update region status for %s/%s: %s", name, region, exc)

    def update_desired_state(self, name: str, state: str) -> None:
        with contextlib.suppress(self.table.meta.client.exceptions.ConditionalCheckFailedException):
            self.table.update_item(
                Key={"endpoint_name": name},
                UpdateExpression="SET desired_state = :s, updated_at = :u",
                ConditionExpression="attribute_exists(endpoint_name)",
                ExpressionAttributeValues={":s": state, ":u": datetime.now(UTC).isoformat()},
                ReturnValues="ALL_NEW",
            )

    def delete_endpoint(self, name: str) -> None:
        with contextlib.suppress(self.table.meta.client.exceptions.ConditionalCheckFailedException):
            self.table.delete_item(
                Key={"endpoint_name": name}, ConditionExpression="attribute_exists(endpoint_name)"
            )


class MonitorModel:
    """The monitor's loop for one region: lease, Scan, each endpoint in turn, purge, sleep."""

    def __init__(
        self, store: Store, journal: Journal, region: str, namespace: str, interval: float, timeout: int = 30
    ) -> None:
        self.store, self.journal = store, journal
        self.region, self.namespace, self.interval, self.timeout = region, namespace, interval, timeout
        self.apps = client.AppsV1Api()
        self.core = client.CoreV1Api()
        self.networking = client.NetworkingV1Api()
        self.holder = os.environ.get("HOSTNAME") or f"monitor-{os.getpid()}"
        self.unready_since: dict[str, datetime] = {}
        self.threshold = int(os.environ.get("INFERENCE_UNHEALTHY_THRESHOLD_SECONDS", "300"))
        self.stopped = threading.Event()
        self.cycles = 0

    # --------------------------------------------------------------------- the loop

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                if self.acquire_lease():
                    self.reconcile()
            except Exception as exc:
                log.error("Reconciliation error: %s", exc)
            self.stopped.wait(self.interval)

    def acquire_lease(self) -> bool:
        """Read the lease; renew it when ours or expired (a PUT), create it when absent."""
        leases = client.CoordinationV1Api()
        now = datetime.now(UTC)
        try:
            lease = leases.read_namespaced_lease(LEASE, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                return False
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=LEASE, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.holder,
                    lease_duration_seconds=int(self.interval * 3),
                    renew_time=now,
                ),
            )
            try:
                leases.create_namespaced_lease(self.namespace, body)
            except ApiException:
                return False
            return True
        holder = lease.spec.holder_identity
        renewed = lease.spec.renew_time
        if renewed and (now - renewed.replace(tzinfo=UTC)).total_seconds() > self.interval * 3:
            holder = None
        if holder not in (None, "", self.holder):
            return False
        lease.spec.holder_identity, lease.spec.renew_time = self.holder, now
        try:
            leases.replace_namespaced_lease(LEASE, self.namespace, lease)
        except ApiException:
            return False
        return True

    def reconcile(self) -> None:
        self.cycles += 1
        began = time.time()
        try:
            endpoints, cut = self.store.list_endpoints()
        except Exception as exc:
            log.error("Failed to list endpoints from DynamoDB: %s", exc)
            return
        for endpoint in endpoints:
            name = endpoint.get("endpoint_name", "unknown")
            try:
                self.reconcile_endpoint(endpoint)
            except Exception as exc:
                log.error("Failed to reconcile endpoint %s: %s", name, exc)
                self.status(name, "error", error=str(exc))
        for endpoint in endpoints:
            if endpoint.get("desired_state") != "deleted" or not endpoint.get("target_regions"):
                continue
            statuses = endpoint.get("region_status") or {}
            if all((statuses.get(r) or {}).get("state") == "deleted" for r in endpoint["target_regions"]):
                self.store.delete_endpoint(endpoint["endpoint_name"])
        self.journal.write(
            "cycle", n=self.cycles, began=began, ended=time.time(), endpoints=len(endpoints), cut=cut
        )

    def status(
        self, name: str, state: str, ready: int = 0, desired: int = 0, error: str | None = None
    ) -> None:
        self.store.update_region_status(name, self.region, state, ready, desired, error)
        self.journal.write("status", name=name, state=state)

    # --------------------------------------------------------------------- one endpoint

    def reconcile_endpoint(self, endpoint: dict[str, Any]) -> None:
        name = endpoint["endpoint_name"]
        desired = endpoint.get("desired_state", "deploying")
        spec = endpoint.get("spec") or {}
        ns = endpoint.get("namespace", self.namespace)
        if self.region not in (endpoint.get("target_regions") or []):
            if self.get_deployment(name, ns) is not None:
                self.delete_resources(name, ns)
                self.status(name, "deleted")
            return
        if desired in ("deploying", "running"):
            self.reconcile_running(name, ns, spec, endpoint)
        elif desired == "stopped":
            self.reconcile_stopped(name, ns)
        elif desired == "deleted":
            self.unready_since.pop(name, None)
            if self.get_deployment(name, ns) is not None:
                self.delete_resources(name, ns)
            self.status(name, "deleted")

    def reconcile_running(self, name: str, ns: str, spec: dict[str, Any], endpoint: dict[str, Any]) -> None:
        deployment = self.get_deployment(name, ns)
        replicas = spec.get("replicas", 1)
        if deployment is None:
            self.apps.create_namespaced_deployment(
                ns, render.deployment(name, spec), _request_timeout=self.timeout
            )
            self.create_service(name, ns, spec)
            self.put_ingress(name, ns, spec)
            if (spec.get("autoscaling") or {}).get("enabled"):
                self.put_hpa(name, ns, spec)
            self.status(name, "creating", desired=replicas)
            return
        self.ensure_service(name, ns, spec)
        current = deployment.spec.replicas or 1
        ready = deployment.status.ready_replicas or 0
        if not self.watchdog_removed(name, ns, ready):
            self.ensure_ingress(name, ns, spec)
        if current != replicas:
            self.patch_replicas(name, ns, replicas)
            self.status(name, "updating", ready, replicas)
            return
        containers = deployment.spec.template.spec.containers
        image = containers[0].image if containers else None
        wanted = spec.get("image", "")
        if image and wanted and image != wanted:
            body = {"spec": {"template": {"spec": {"containers": [{"name": "inference", "image": wanted}]}}}}
            self.apps.patch_namespaced_deployment(name, ns, body=body, _request_timeout=self.timeout)
            self.journal.write("image", name=name)
            self.status(name, "updating", ready, replicas)
            return
        state = "running" if ready >= replicas else "creating"
        self.status(name, state, ready, replicas)
        canary = spec.get("canary")
        if canary:
            self.reconcile_canary(name, ns, spec, canary)
        else:
            self.cleanup_canary(name, ns)
        if state == "running" and endpoint.get("desired_state") == "deploying":
            statuses = (endpoint.get("region_status") or {}).values()
            if all(not isinstance(s, dict) or s.get("state") == "running" for s in statuses):
                self.store.update_desired_state(name, "running")

    def reconcile_stopped(self, name: str, ns: str) -> None:
        deployment = self.get_deployment(name, ns)
        if deployment is None:
            return
        if (deployment.spec.replicas or 0) > 0:
            self.patch_replicas(name, ns, 0)
        self.status(name, "stopped")

    def reconcile_canary(self, name: str, ns: str, spec: dict[str, Any], canary: dict[str, Any]) -> None:
        canary_name = f"{name}-canary"
        canary_spec = {**spec, "image": canary.get("image", ""), "replicas": canary.get("replicas", 1)}
        canary_spec.pop("canary", None)
        live = self.get_deployment(canary_name, ns)
        if live is None:
            body = render.deployment(canary_name, canary_spec)
            self.apps.create_namespaced_deployment(ns, body, _request_timeout=self.timeout)
            self.create_service(canary_name, ns, canary_spec)
        else:
            containers = live.spec.template.spec.containers
            if (containers[0].image if containers else None) != canary_spec["image"]:
                body = {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "inference", "image": canary_spec["image"]}]}
                        }
                    }
                }
                self.apps.patch_namespaced_deployment(
                    canary_name, ns, body=body, _request_timeout=self.timeout
                )
            if (live.spec.replicas or 1) != canary_spec["replicas"]:
                self.patch_replicas(canary_name, ns, canary_spec["replicas"])
        weighted = render.ingress(name, spec, canary.get("weight", 10))
        try:
            self.networking.patch_namespaced_ingress(
                f"inference-{name}", ns, weighted, _request_timeout=self.timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.networking.create_namespaced_ingress(ns, weighted, _request_timeout=self.timeout)

    # --------------------------------------------------------------------- Kubernetes calls

    def get_deployment(self, name: str, ns: str) -> Any:
        try:
            return self.apps.read_namespaced_deployment(name, ns, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_service(self, name: str, ns: str, spec: dict[str, Any]) -> None:
        try:
            self.core.create_namespaced_service(ns, render.service(name, spec), _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def ensure_service(self, name: str, ns: str, spec: dict[str, Any]) -> None:
        try:
            self.core.read_namespaced_service(name, ns, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.create_service(name, ns, spec)

    def put_ingress(self, name: str, ns: str, spec: dict[str, Any]) -> None:
        """Create the Ingress; patch it when it exists (409)."""
        body = render.ingress(name, spec)
        try:
            self.networking.create_namespaced_ingress(ns, body, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.networking.patch_namespaced_ingress(
                f"inference-{name}", ns, body, _request_timeout=self.timeout
            )

    def ensure_ingress(self, name: str, ns: str, spec: dict[str, Any]) -> None:
        try:
            self.networking.read_namespaced_ingress(f"inference-{name}", ns, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.put_ingress(name, ns, spec)

    def put_hpa(self, name: str, ns: str, spec: dict[str, Any]) -> None:
        autoscaling = client.AutoscalingV2Api()
        body = render.hpa(name, spec)
        try:
            autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            autoscaling.patch_namespaced_horizontal_pod_autoscaler(name, ns, body)

    def patch_replicas(self, name: str, ns: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        self.apps.patch_namespaced_deployment(name, ns, body=body, _request_timeout=self.timeout)

    def watchdog_removed(self, name: str, ns: str, ready: int) -> bool:
        """The in-memory unready clock; past the threshold at 0 ready, the Ingress is deleted."""
        if ready > 0:
            self.unready_since.pop(name, None)
            return False
        now = datetime.now(UTC)
        since = self.unready_since.setdefault(name, now)
        if (now - since).total_seconds() < self.threshold:
            return False
        with contextlib.suppress(ApiException):
            self.networking.delete_namespaced_ingress(f"inference-{name}", ns, _request_timeout=self.timeout)
        return True

    def cleanup_canary(self, name: str, ns: str) -> None:
        """Every cycle for an endpoint without a canary: two DELETEs, answered 404 (defect 11)."""
        for delete in (self.apps.delete_namespaced_deployment, self.core.delete_namespaced_service):
            with contextlib.suppress(ApiException):
                delete(f"{name}-canary", ns, _request_timeout=self.timeout)

    def delete_resources(self, name: str, ns: str) -> None:
        self.cleanup_canary(name, ns)
        for delete, target in (
            (self.apps.delete_namespaced_deployment, name),
            (self.core.delete_namespaced_service, name),
            (self.networking.delete_namespaced_ingress, f"inference-{name}"),
            (client.AutoscalingV2Api().delete_namespaced_horizontal_pod_autoscaler, name),
        ):
            with contextlib.suppress(ApiException):
                delete(target, ns, _request_timeout=self.timeout)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.monitor", description=__doc__.splitlines()[0])
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument(
        "--interval", type=float, default=float(os.environ.get("RECONCILE_INTERVAL_SECONDS", "15"))
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    region = os.environ.get("REGION", "us-east-1")
    store = Store(os.environ.get("INFERENCE_ENDPOINTS_TABLE_NAME", "gco-inference-endpoints"), region)
    monitor = MonitorModel(
        store,
        Journal(args.journal),
        region,
        os.environ.get("INFERENCE_NAMESPACE", "gco-inference"),
        args.interval,
    )
    signal.signal(signal.SIGTERM, lambda *_: monitor.stopped.set())
    monitor.journal.write("online", pid=os.getpid())
    monitor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
