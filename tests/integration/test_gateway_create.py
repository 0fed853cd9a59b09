"""The gateway's create-only write (``ClusterGateway.create``), on both API servers: a server-side apply
conditional on a resourceVersion no object has creates an absent object and answers 409 for one that
exists, whoever made it; the object it creates is owned by our ``Apply`` entry alone, so a field a later
apply leaves out is removed (created by POST, an ``Update`` entry of ours would keep it)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from gco_tasks.adapters.cluster import ClusterGateway
from gco_tasks.core.conventions import FIELD_MANAGER
from tests.clusters import Cluster

NS = "gco-inference"


def _service(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"gco.io/type": "inference"}}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8000}]},
    }


def test_create_makes_an_absent_object_and_leaves_an_existing_one_alone(cluster: Cluster) -> None:
    gateway = ClusterGateway(cluster.api_client, NS)
    created = gateway.create(_service("fresh", {"note": "first"}))
    assert created is not None and created["metadata"]["name"] == "fresh"
    managers = {(e["manager"], e["operation"]) for e in created["metadata"]["managedFields"]}
    assert managers == {(FIELD_MANAGER, "Apply")}
    assert gateway.create(_service("fresh", {"note": "second"})) is None  # exists: left as it is
    core = client.CoreV1Api(cluster.api_client)
    assert core.read_namespaced_service("fresh", NS).metadata.annotations == {"note": "first"}
    gateway.apply(_service("fresh"))  # a later apply without the annotation removes it
    assert not core.read_namespaced_service("fresh", NS).metadata.annotations


def test_create_refuses_to_write_over_an_object_someone_else_made(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api_client)
    theirs = {
        "metadata": {"name": "taken", "labels": {"team": "other"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]},
    }
    core.create_namespaced_service(NS, theirs, field_manager="kubectl-create")
    gateway = ClusterGateway(cluster.api_client, NS)
    assert gateway.create(_service("taken")) is None
    after = core.read_namespaced_service("taken", NS)
    assert after.spec.selector == {"app": "theirs"} and after.metadata.labels == {"team": "other"}
    assert FIELD_MANAGER not in {entry.manager for entry in after.metadata.managed_fields}
