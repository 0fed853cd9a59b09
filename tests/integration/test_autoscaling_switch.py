"""Autoscaling on and off never moves the current replica count, and a count the HPA chose is left alone.

A thread reads the Deployment's ``spec.replicas`` every few milliseconds while the fleet switches
autoscaling on (the HPA gets the field: ``hpa_handover``) and off again (the record's count comes back). On
the real control plane the HPA controller runs (its sync period is 5 s there; while no pod reports usage
it has no metrics, so in range it leaves the count alone); the stand-in shows the same server-side-apply
ownership without it. Turning autoscaling on without the handover drops a 3-replica Deployment to 1 at
once: the API server resets a field that loses its only manager to its default.

On the real control plane pods then report CPU use (``gco_sandbox/metrics_api.py``), the HPA scales the
Deployment up, the handover manager is gone, and the fleet writes nothing to it, cycle after cycle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from gco_sandbox.controlplane import raw
from gco_sandbox.metrics_api import USAGE_ANNOTATIONS
from gco_tasks.core.conventions import FIELD_MANAGER, HANDOVER_MANAGER
from gco_tasks.core.hpa_handover import owns_replicas
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster, inference_pods

from .harness import REGION, RequestLog, converge, run_cycle, wait_for
from .test_claims import next_resync_slot

NAMESPACE = "gco-inference"


class Sampler:
    """``spec.replicas`` of one Deployment, read in a loop on its own thread and client."""

    def __init__(self, api_client: client.ApiClient, name: str) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.name = name
        self.values: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            live = raw(self.apps.read_namespaced_deployment, self.name, NAMESPACE)
            self.values.append(int(live["spec"]["replicas"]))
            self._stop.wait(0.01)

    def mark(self) -> int:
        return len(self.values)

    def __enter__(self) -> Sampler:
        self._thread.start()
        wait_for(lambda: len(self.values) > 0, "the first sample")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture()
def sampler(cluster: Cluster) -> Iterator[Any]:
    def start(name: str) -> Sampler:
        return Sampler(cluster.api_client, name)

    yield start


def region_status(fleet: Fleet, name: str) -> dict[str, Any]:
    return dict((fleet.store.get_item(name) or {}).get("region_status", {}).get(REGION, {}))


def live(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    found = {o["metadata"]["name"]: o for o in _listed(cluster, kind)}
    return found.get(name)


def _listed(cluster: Cluster, kind: str) -> list[dict[str, Any]]:
    if kind == "Deployment":
        return list(raw(client.AppsV1Api(cluster.api_client).list_namespaced_deployment, NAMESPACE)["items"])
    hpas = client.AutoscalingV2Api(cluster.api_client)
    return list(raw(hpas.list_namespaced_horizontal_pod_autoscaler, NAMESPACE)["items"])


def hpa_has_seen(cluster: Cluster, replicas: int) -> bool:
    """The HPA exists and (on the real server) its controller has read the Deployment's scale."""
    hpa = live(cluster, "HorizontalPodAutoscaler", "auto")
    if hpa is None:
        return False
    return not cluster.real or (hpa.get("status") or {}).get("currentReplicas") == replicas


def test_switching_autoscaling_on_and_off_never_lowers_the_replica_count(
    fleet: Fleet, cluster: Cluster, sampler: Any
) -> None:
    fleet.store.create(
        Endpoint.new("auto", parse_spec({"image": "vllm/vllm-openai:v0.6.3", "replicas": 3}), [REGION])
    )
    converge(fleet, lambda: region_status(fleet, "auto").get("state") == "running")
    with sampler("auto") as samples:
        fleet.store.update_spec(
            "auto",
            lambda spec: spec.with_changes(
                autoscaling={"enabled": True, "min_replicas": 2, "max_replicas": 5}
            ),
        )
        converge(
            fleet, lambda: hpa_has_seen(cluster, 3) and region_status(fleet, "auto").get("state") == "running"
        )
        deployment = live(cluster, "Deployment", "auto")
        assert deployment is not None and deployment["spec"]["replicas"] == 3
        assert not owns_replicas(deployment, FIELD_MANAGER), "the fleet no longer sets spec.replicas"
        assert owns_replicas(deployment, HANDOVER_MANAGER), (
            "the handover manager keeps it until the HPA writes"
        )
        switched_on = samples.mark()

        fleet.store.update_spec("auto", lambda spec: spec.with_changes(autoscaling=None, replicas=4))
        converge(
            fleet,
            lambda: (
                live(cluster, "HorizontalPodAutoscaler", "auto") is None
                and (live(cluster, "Deployment", "auto") or {}).get("spec", {}).get("replicas") == 4
            ),
        )
        wait_for(lambda: samples.values[-1] == 4, "the sampler to see 4")
    on, off = samples.values[:switched_on], samples.values[switched_on:]
    assert on and set(on) == {3}, f"while switching on: {sorted(set(on))}"
    assert off and set(off) <= {3, 4} and off[-1] == 4, f"while switching off: {sorted(set(off))}"
    assert owns_replicas(live(cluster, "Deployment", "auto") or {}, FIELD_MANAGER)
    converge(fleet, lambda: region_status(fleet, "auto").get("replicas_ready") == 4)


@pytest.mark.real_only  # the HPA controller raises the default 1 to minReplicas (the stand-in has none)
def test_start_after_stop_with_autoscaling_comes_back_at_min_replicas(fleet: Fleet, cluster: Cluster) -> None:
    """Stopped is 0 replicas; an HPA never scales a target at 0, so ``start`` must not hand 0 over; and
    the region is not ``running`` until the HPA has brought it to ``minReplicas``."""
    autoscaling = {"enabled": True, "min_replicas": 2, "max_replicas": 4}
    spec = parse_spec({"image": "vllm/vllm-openai:v0.6.3", "autoscaling": autoscaling})
    fleet.store.create(Endpoint.new("auto", spec, [REGION]))
    converge(fleet, lambda: region_status(fleet, "auto").get("state") == "running")
    fleet.store.update_desired_state("auto", "stopped")
    converge(fleet, lambda: (live(cluster, "Deployment", "auto") or {}).get("spec", {}).get("replicas") == 0)
    fleet.store.update_desired_state("auto", "deploying")
    converge(fleet, lambda: region_status(fleet, "auto").get("state") == "running")
    assert (live(cluster, "Deployment", "auto") or {})["spec"]["replicas"] == 2
    assert region_status(fleet, "auto")["replicas_ready"] == 2


def managers(deployment: dict[str, Any]) -> dict[str, set[str]]:
    """Who owns ``spec.replicas`` and how: manager -> operations (``Apply``, ``Update/scale``)."""
    found: dict[str, set[str]] = {}
    for entry in deployment["metadata"].get("managedFields") or []:
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            how = entry["operation"] + (f"/{entry['subresource']}" if entry.get("subresource") else "")
            found.setdefault(entry["manager"], set()).add(how)
    return found


def load_pods(cluster: Cluster, name: str, cpu: str) -> list[str]:
    """Every pod of ``name`` reports ``cpu`` in use (the metrics API reads the annotation)."""
    core = client.CoreV1Api(cluster.api_client)
    loaded = []
    for pod in inference_pods(cluster.api_client, f"app={name}"):
        body = {"metadata": {"annotations": {USAGE_ANNOTATIONS["cpu"]: cpu}}}
        raw(core.patch_namespaced_pod, pod["metadata"]["name"], NAMESPACE, body)
        loaded.append(pod["metadata"]["name"])
    return loaded


@pytest.mark.real_only  # the HPA controller and the metrics API run on the real control plane only
def test_the_fleet_writes_nothing_to_a_deployment_the_hpa_scaled(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HPA scales 2 -> 4 on CPU; from then on the fleet never writes the Deployment (fan-out cycles, a
    resync cycle, an ad hoc reconcile) and the handover manager no longer appears in its managed fields.

    Breaking the product makes it fail: applying ``spec.replicas`` again with autoscaling on (the record's
    2 back over the HPA's 4), or handing over on every reconcile (``replicas_handover`` ignoring who owns
    the field, so ``gco-tasks-handover`` re-takes it and writes each cycle)."""
    spec = parse_spec({"image": "vllm/vllm-openai:v0.6.3", "replicas": 2})
    fleet.store.create(Endpoint.new("auto", spec, [REGION]))
    converge(fleet, lambda: region_status(fleet, "auto").get("state") == "running")
    autoscaling = {"enabled": True, "min_replicas": 2, "max_replicas": 4}
    fleet.store.update_spec("auto", lambda spec: spec.with_changes(autoscaling=autoscaling))
    converge(
        fleet, lambda: hpa_has_seen(cluster, 2) and region_status(fleet, "auto").get("state") == "running"
    )
    handed = live(cluster, "Deployment", "auto") or {}
    assert managers(handed) == {HANDOVER_MANAGER: {"Apply"}}, "the handover manager holds the count"

    # 1.4 CPU of a 1 CPU request is 200 % of the HPA's 70 % target: it wants 2 x 200/70 -> 6, capped at 4.
    assert len(load_pods(cluster, "auto", "1400m")) == 2
    wait_for(
        lambda: (live(cluster, "Deployment", "auto") or {}).get("spec", {}).get("replicas") == 4,
        "the HPA to scale auto to 4",
        timeout=120,
    )
    scaled = live(cluster, "Deployment", "auto") or {}
    owners = managers(scaled)
    assert HANDOVER_MANAGER not in {e["manager"] for e in scaled["metadata"]["managedFields"]}, owners
    assert FIELD_MANAGER not in owners and {"Update/scale"} in owners.values(), owners

    requests = RequestLog(fleet, monkeypatch)
    run_cycle(fleet)
    run_cycle(fleet, now=next_resync_slot(fleet, "auto", time.time()))  # a full reconcile of every endpoint
    reconcile(fleet, "auto")  # ad hoc, as the CLI's nudge
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/auto"
    assert not [call for call in requests.writes() if call.endswith(path)], requests.writes()
    converge(fleet, lambda: region_status(fleet, "auto").get("replicas_ready") == 4, timeout=90)
    assert not [call for call in requests.writes() if call.endswith(path)], requests.writes()
    after = live(cluster, "Deployment", "auto") or {}
    assert (
        after["spec"]["replicas"] == 4 and after["metadata"]["generation"] == scaled["metadata"]["generation"]
    )
    assert managers(after) == owners
