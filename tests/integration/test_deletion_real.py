"""Deletion and cleanup on real Kubernetes (``real_only``: the stand-in has no finalizers, garbage
collector, ReplicaSets or pods).

- An Ingress held by a finalizer (as the AWS load balancer controller holds one with
  ``ingress.k8s.aws/resources`` while it removes the ALB's rules; the test adds it itself) is deleted
  once and then waited for: no DELETE in later cycles, the region reports ``deleting`` until it is
  gone, and the record is purged only after ``deleted``.
- Foreground deletion: the objects of a deleted endpoint, a canary after rollback or promotion, and
  orphans go with their ReplicaSets and pods, within a deadline.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from gco_sandbox.controlplane import raw
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.purge import purge
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, converge, run_cycle, wait_for

pytestmark = pytest.mark.real_only

NAMESPACE = "gco-inference"
ALB_FINALIZER = "ingress.k8s.aws/resources"


def deploy(fleet: Fleet, name: str = "demo", **spec: Any) -> None:
    fields = {"image": "vllm/vllm-openai:v0.6.3", "replicas": 2, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), [REGION]))


def state(fleet: Fleet, name: str = "demo") -> str | None:
    item = fleet.store.get_item(name) or {}
    return (item.get("region_status", {}).get(REGION) or {}).get("state")


def workload_left(cluster: Cluster, app: str) -> list[str]:
    """Every Deployment, ReplicaSet and pod of ``app=<app>`` still there (terminating or not)."""
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)
    selector = f"app={app}"
    found = []
    for kind, listing in (
        ("Deployment", apps.list_namespaced_deployment),
        ("ReplicaSet", apps.list_namespaced_replica_set),
        ("Pod", core.list_namespaced_pod),
    ):
        found += [
            f"{kind}/{o['metadata']['name']}"
            for o in raw(listing, NAMESPACE, label_selector=selector)["items"]
        ]
    return found


class Deletes:
    """The DELETE requests the fleet's client sends, by path (counted client side)."""

    def __init__(self, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: Counter[str] = Counter()
        rest = fleet.cluster.api_client.rest_client
        send = rest.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if method == "DELETE":
                self.paths[
                    urlparse(url).path.rsplit("/", 2)[-2] + "/" + urlparse(url).path.rsplit("/", 1)[-1]
                ] += 1
            return send(method, url, *args, **kwargs)

        monkeypatch.setattr(rest, "request", counted)


def ingress(cluster: Cluster, name: str = "inference-demo") -> dict[str, Any] | None:
    items = raw(client.NetworkingV1Api(cluster.api_client).list_namespaced_ingress, NAMESPACE)["items"]
    return next((i for i in items if i["metadata"]["name"] == name), None)


def set_finalizers(cluster: Cluster, finalizers: list[str]) -> None:
    """Set the Ingress's finalizers (a JSON merge patch replaces the list; a strategic merge would add)."""
    networking = client.NetworkingV1Api(cluster.api_client)
    body = {"metadata": {"finalizers": finalizers or None}}
    content = "application/merge-patch+json"
    raw(networking.patch_namespaced_ingress, "inference-demo", NAMESPACE, body, _content_type=content)


def test_an_ingress_held_by_a_finalizer_is_deleted_once_and_waited_for(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(fleet)
    converge(fleet, lambda: state(fleet) == "running")
    set_finalizers(cluster, [ALB_FINALIZER])
    deletes = Deletes(fleet, monkeypatch)
    fleet.store.update_desired_state("demo", "deleted")
    first = run_cycle(fleet)
    assert first[0]["state"] == "deleting" and "delete Ingress/inference-demo" in first[0]["actions"]
    wait_for(lambda: workload_left(cluster, "demo") == [], "the Deployment, its ReplicaSet and pods to go")
    for _ in range(3):
        for later in run_cycle(fleet):  # the fan-out sends nothing while only a finalizer holds the Ingress
            assert later["actions"] == [] and later["state"] == "deleting", later
        asked = reconcile(fleet, "demo").as_dict()  # nor does a reconcile asked for delete it again
        assert asked["actions"] == [] and asked["state"] == "deleting", asked
    assert deletes.paths["ingresses/inference-demo"] == 1, deletes.paths
    held = ingress(cluster)
    assert held is not None and held["metadata"].get("deletionTimestamp"), "held by its finalizer"
    assert state(fleet) == "deleting"
    assert purge(fleet).purged == [], "not purged while a region is still deleting"

    set_finalizers(cluster, [])  # the load balancer controller is done
    converge(fleet, lambda: state(fleet) == "deleted")
    assert ingress(cluster) is None and deletes.paths["ingresses/inference-demo"] == 1
    assert purge(fleet).purged == ["demo"]


def test_a_canary_rolled_back_or_promoted_leaves_no_replica_set_or_pod(
    fleet: Fleet, cluster: Cluster
) -> None:
    canary = {"image": "vllm/vllm-openai:v0.7.0", "weight": 20, "replicas": 1}
    deploy(fleet, canary=canary)
    converge(fleet, lambda: state(fleet) == "running" and workload_left(cluster, "demo-canary") != [])
    fleet.store.update_spec("demo", lambda spec: spec.with_changes(canary=None))  # rollback
    run_cycle(fleet)
    wait_for(lambda: workload_left(cluster, "demo-canary") == [], "the canary's ReplicaSet and pods to go")

    fleet.store.update_spec("demo", lambda spec: spec.with_changes(canary=canary))
    converge(fleet, lambda: state(fleet) == "running" and workload_left(cluster, "demo-canary") != [])
    fleet.store.update_spec(
        "demo", lambda spec: spec.with_changes(image=canary["image"], canary=None)
    )  # promote
    run_cycle(fleet)
    wait_for(
        lambda: workload_left(cluster, "demo-canary") == [], "the promoted canary's ReplicaSet and pods to go"
    )
    converge(fleet, lambda: state(fleet) == "running")


def test_a_deleted_endpoint_and_an_orphan_leave_no_replica_set_or_pod(fleet: Fleet, cluster: Cluster) -> None:
    deploy(fleet, "gone")
    deploy(fleet, "orphan")
    converge(fleet, lambda: state(fleet, "gone") == "running" and state(fleet, "orphan") == "running")
    fleet.store.update_desired_state("gone", "deleted")
    fleet.store.client.delete_item(TableName=fleet.store.table_name, Key={"endpoint_name": {"S": "orphan"}})
    converge(
        fleet,
        lambda: workload_left(cluster, "gone") == [] and workload_left(cluster, "orphan") == [],
        timeout=30,
    )
    converge(fleet, lambda: state(fleet, "gone") == "deleted", timeout=30)
