"""Cutting a region over from GCO's monitor, on the real control plane (ReplicaSets, pods and field
managers are Kubernetes' to decide): objects created exactly as GCO's monitor creates them
(``gco_monitor``), then the fleet. Afterwards every object is what we render, nothing GCO's manager
owned is left (its stale env var, the old model-sync script's args, the weighted-routing annotation of
a rolled-back canary), replicas under an HPA never dropped, and no pod restarted where the pod template
means the same: judged by identity, each Deployment keeps the UIDs of its ReplicaSets and of its pods
there, and gains exactly one new ReplicaSet where we deliberately differ (the record's env, the model
sync, the canary's root path). ``gco-tasks diff``, run first as the runbook says, predicted all of it:
which pods restart, and each object as the cut-over left it.

What makes it fail (checked by breaking it on purpose in a scratch run): a pod of ``plain`` deleted during
the cut-over (its ReplicaSet makes a new one with another UID, the count of ReplicaSets unchanged), or a
rendering that adds an annotation to every pod template (a new ReplicaSet where none may appear).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from gco_tasks.cli.diff import Change, clean, compute_changes
from gco_tasks.core.adoption import LEGACY_FIELD_MANAGERS
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import desired_objects
from gco_tasks.flows.observe import candidate_keys, read_digests
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster
from tests.support.waits import wait_for

from .gco_monitor import NAMESPACE, Monitor
from .harness import REGION, make_fleet, run_cycle

pytestmark = pytest.mark.real_only

VLLM = "vllm/vllm-openai:v0.6.3"
TGI = "ghcr.io/huggingface/text-generation-inference:2.4.0"
#: The records, and what GCO's monitor had created from them (``gco`` overrides).
ENDPOINTS: dict[str, dict[str, Any]] = {
    "plain": {"image": VLLM, "env": {"MODEL": "llama", "HF_HOME": "/models"}, "capacity_type": "on-demand"},
    "auto": {
        "image": "nginx:1.27",
        "gpu_count": 0,
        "replicas": 2,
        "autoscaling": {"enabled": True, "min_replicas": 2, "max_replicas": 4},
    },
    "split": {"image": VLLM, "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 20}},
    "rolledback": {"image": VLLM},
    "stale": {"image": VLLM, "env": {"A": "1"}},
    "synced": {"image": TGI, "model_source": "s3://models/mistral/", "model_path": "/models/mistral"},
}
GCO_DIFFERENT = {
    "rolledback": {"image": VLLM, "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 30}},
    "stale": {"image": VLLM, "env": {"A": "1", "OLD_FLAG": "1"}},  # GCO never applied the env change
}
#: Deployments whose pod template we change on purpose (a defect fix): one new ReplicaSet each.
ROLLED = {"stale", "synced", "split-canary"}
#: Pods that cannot start here (no PersistentVolumeClaim ``efs-claim``): not waited for.
NOT_STARTING = {"synced"}


def deployments(api: client.ApiClient) -> dict[str, Any]:
    found = client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE, label_selector="gco.io/type")
    return {d.metadata.name: d for d in found.items}


@dataclass(frozen=True)
class Identity:
    """What a Deployment's pods are, by UID: its ReplicaSets and the pods they own (not yet deleted)."""

    replica_sets: frozenset[str]
    pods: frozenset[str]


def identities(api: client.ApiClient) -> dict[str, Identity]:
    """Each Deployment's ReplicaSets and pods by UID (ownerReferences: pod -> ReplicaSet -> Deployment)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    deployment_of: dict[str, str] = {}  # ReplicaSet UID -> Deployment name
    for rs in apps.list_namespaced_replica_set(NAMESPACE).items:
        for owner in rs.metadata.owner_references or []:
            if owner.kind == "Deployment":
                deployment_of[rs.metadata.uid] = owner.name
    pods: dict[str, set[str]] = {}
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        for owner in pod.metadata.owner_references or []:
            if owner.uid in deployment_of:
                pods.setdefault(deployment_of[owner.uid], set()).add(pod.metadata.uid)
    names = set(deployment_of.values())
    return {
        name: Identity(
            frozenset(uid for uid, owner in deployment_of.items() if owner == name),
            frozenset(pods.get(name, ())),
        )
        for name in names
    }


def restarts(before: dict[str, Identity], after: dict[str, Identity]) -> dict[str, str]:
    """What changed per Deployment, by identity; a Deployment in ``ROLLED`` must gain exactly one
    ReplicaSet (its old ones kept) and may replace its pods, every other must keep both sets as they were."""
    found: dict[str, str] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            found[name] = f"ReplicaSets before {old}, after {new}"
        elif name in ROLLED:
            if not old.replica_sets < new.replica_sets or len(new.replica_sets - old.replica_sets) != 1:
                found[name] = (
                    f"expected one new ReplicaSet: {sorted(old.replica_sets)} -> {sorted(new.replica_sets)}"
                )
        elif new != old:
            found[name] = (
                f"ReplicaSets {sorted(old.replica_sets)} -> {sorted(new.replica_sets)}, "
                f"pods {sorted(old.pods)} -> {sorted(new.pods)}"
            )
    return found


def rolled_out(deployment: Any) -> bool:
    status = deployment.status
    return (status.observed_generation or 0) >= deployment.metadata.generation and (
        (status.ready_replicas or 0) == deployment.spec.replicas == (status.updated_replicas or 0)
    )


def gco_region(fleet: Fleet, cluster: Cluster) -> dict[str, Identity]:
    """The records in the table and GCO's monitor's objects in the cluster, rolled out; each Deployment's
    ReplicaSets and pods then."""
    monitor = Monitor(cluster.api_client)
    for name, spec in ENDPOINTS.items():
        fleet.store.create(Endpoint.new(name, parse_spec(spec), [REGION]))
        monitor.create(name, GCO_DIFFERENT.get(name, spec))
    monitor.clean_up_canary("rolledback")
    wait_for(
        "GCO's pods to be ready",
        lambda: all(
            rolled_out(d) for name, d in deployments(cluster.api_client).items() if name not in NOT_STARTING
        ),
        timeout=90,
        pause=0.3,
    )
    return identities(cluster.api_client)


@pytest.fixture()
def fleet(redis_url: str, dynamodb_url: str, cluster: Cluster) -> Iterator[Fleet]:
    """A fleet cutting over as the README says to cut over without restarts: the inference pod lockdown
    (not in GCO's pod template) off, to be switched on later in a planned window."""
    built = make_fleet(redis_url, cluster.api_client, inference_pod_lockdown=False)
    built.store.create_table()
    yield built
    built.state.client.close()


def test_adopting_gcos_region_keeps_pods_and_removes_what_gco_owned(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = cluster.api_client
    before = gco_region(fleet, cluster)
    assert {name: len(i.replica_sets) for name, i in before.items()} == {name: 1 for name in deployments(api)}
    assert all(i.pods for name, i in before.items() if name not in NOT_STARTING), before
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    predicted = {c.key: c for name in ENDPOINTS for c in compute_changes(fleet.settings, name, REGION)}
    assert {name for (kind, name), c in predicted.items() if c.rolls_pods} == ROLLED
    lowest_auto = 2
    deadline = time.monotonic() + 120
    while not adopted(fleet):
        run_cycle(fleet)
        lowest_auto = min(lowest_auto, deployments(api)["auto"].spec.replicas)
        assert time.monotonic() < deadline, "the fleet did not converge"
        time.sleep(0.3)
    assert lowest_auto == 2, "replicas under the HPA must never drop"
    assert restarts(before, identities(api)) == {}, "pods restarted where the template means the same"
    assert_nothing_of_gco_left(api)
    assert_as_predicted(fleet, predicted)


def assert_as_predicted(fleet: Fleet, predicted: dict[tuple[str, str], Change]) -> None:
    """Each object the diff said would change is now exactly what it showed; nothing is left to do."""
    for (kind, name), change in predicted.items():
        live = fleet.cluster.get_object(kind, name)
        if change.verb == "delete":
            assert live is None, (kind, name)
            continue
        assert live is not None and clean(live) == change.after, (kind, name)
    assert [c for name in ENDPOINTS for c in compute_changes(fleet.settings, name, REGION)] == []


def adopted(fleet: Fleet) -> bool:
    """Every endpoint's objects are in sync with the record and owned by us, and every endpoint whose
    pods can start is running."""
    for name in ENDPOINTS:
        item = fleet.store.get_item(name) or {}
        desired = desired_objects(Endpoint.from_item(item), REGION, fleet.render_options)
        observed = read_digests(fleet.cluster, candidate_keys(name), name, desired)
        if {o.key for o in observed} != {(o["kind"], o["metadata"]["name"]) for o in desired}:
            return False
        if any(o.drift or o.legacy for o in observed):
            return False
        state = (item.get("region_status", {}).get(REGION) or {}).get("state")
        if name not in NOT_STARTING and state != "running":
            return False
    return True


def assert_nothing_of_gco_left(api: client.ApiClient) -> None:
    apps, networking = client.AppsV1Api(api), client.NetworkingV1Api(api)
    objects = [
        *apps.list_namespaced_deployment(NAMESPACE).items,
        *client.CoreV1Api(api).list_namespaced_service(NAMESPACE, label_selector="gco.io/type").items,
        *networking.list_namespaced_ingress(NAMESPACE).items,
        *client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(NAMESPACE).items,
    ]
    for obj in objects:
        managers = {entry.manager for entry in obj.metadata.managed_fields or []}
        assert not managers & set(LEGACY_FIELD_MANAGERS), (obj.metadata.name, managers)
    stale = apps.read_namespaced_deployment("stale", NAMESPACE).spec.template.spec.containers[0]
    assert [(e.name, e.value) for e in stale.env] == [("A", "1")]
    sync = apps.read_namespaced_deployment("synced", NAMESPACE).spec.template.spec.init_containers[0]
    assert sync.args is None and sync.command[:3] == ["aws", "s3", "sync"]
    ingress = networking.read_namespaced_ingress("inference-rolledback", NAMESPACE)
    assert "alb.ingress.kubernetes.io/actions.weighted-routing" not in ingress.metadata.annotations
    assert "gco.io/canary" not in ingress.metadata.labels
    assert ingress.spec.rules[0].http.paths[0].backend.service.name == "rolledback"
