"""k8s/ on a real API server: ``kubectl apply -k k8s/overlays/us-east-1`` (the kubectl ``make
controlplane`` builds) against the real control plane, then the worker's own identity at work.

The worker's ServiceAccount (``gco-tasks`` in gco-system) gets a token through the TokenRequest API; a
client holding only that token can do what the Role grants in gco-inference (list, create, patch,
delete Deployments, Services, Ingresses and HPAs; a fleet with it reconciles an endpoint to ``running``)
and gets 403 for everything else: Secrets in gco-inference, any write or watch of pods, the same kinds
in another namespace, cluster-scoped nodes, and verbs the Role leaves out (update, watch). It may read
(get, list) ReplicaSets and pods in gco-inference, to explain an unfinished rollout. The token is never
printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.controlplane import ControlPlane, raw
from gco_tasks.adapters.cluster import ClusterGateway
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from tests.clusters import reset_real
from tests.integration.harness import REGION, converge, make_fleet

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "k8s" / "overlays" / "us-east-1"
FLEET_NS, INFERENCE_NS = "gco-system", "gco-inference"


def kubectl(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(plane.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def applied(real_cluster: ControlPlane) -> Iterator[ControlPlane]:
    """The us-east-1 overlay applied (and deleted again afterwards)."""
    result = kubectl(real_cluster, "apply", "-k", str(OVERLAY))
    assert result.returncode == 0, f"kubectl apply -k failed:\n{result.stdout}\n{result.stderr}"
    yield real_cluster
    kubectl(real_cluster, "delete", "-k", str(OVERLAY), "--wait=false")


@pytest.fixture(scope="module")
def worker_api(applied: ControlPlane) -> Iterator[client.ApiClient]:
    """A client that authenticates only with the worker ServiceAccount's token (TokenRequest API)."""
    with applied.api_client() as admin:
        request = {"spec": {"expirationSeconds": 3600}}
        core = client.CoreV1Api(admin)
        answer = raw(core.create_namespaced_service_account_token, "gco-tasks", FLEET_NS, request)
    with applied.token_client(answer["status"]["token"]) as api_client:
        yield api_client


def test_the_overlay_applies_and_creates_what_it_renders(applied: ControlPlane) -> None:
    rendered = kubectl(applied, "kustomize", str(OVERLAY))
    assert rendered.returncode == 0, rendered.stderr
    listed = kubectl(applied, "get", "-k", str(OVERLAY), "-o", "name")
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert {
        "serviceaccount/gco-tasks",
        "role.rbac.authorization.k8s.io/gco-tasks",
        "rolebinding.rbac.authorization.k8s.io/gco-tasks",
        "deployment.apps/gco-tasks-worker",
        "deployment.apps/gco-tasks-beat",
        "deployment.apps/gco-tasks-flower",
    } <= names, names
    # The cluster now holds exactly what the overlay says (a re-apply would change nothing; kubectl's
    # client-side apply still reports PDBs "configured": it always resends their `replace` selector).
    diff = kubectl(applied, "diff", "-k", str(OVERLAY))
    assert diff.returncode == 0, f"kubectl diff -k found differences:\n{diff.stdout}{diff.stderr}"


def test_the_worker_token_manages_inference_objects(
    worker_api: client.ApiClient, real_api_client: client.ApiClient
) -> None:
    gateway = ClusterGateway(worker_api, INFERENCE_NS)
    spec = parse_spec(
        {"image": "vllm/vllm-openai:v0.6.3", "autoscaling": {"enabled": True, "max_replicas": 2}}
    )
    objects = render_endpoint(Endpoint.new("rbac", spec, [REGION]), REGION, RenderOptions())
    assert {obj["kind"] for obj in objects} == {"Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"}
    try:
        for obj in objects:  # create (apply of a new object), then patch (apply again, changed)
            gateway.apply(obj)
            obj["metadata"]["labels"]["changed"] = "yes"
            gateway.apply(obj)
        listed = gateway.list_objects("gco.io/endpoint=rbac")
        assert sorted(o["kind"] for o in listed) == sorted(o["kind"] for o in objects)
        assert all(o["metadata"]["labels"]["changed"] == "yes" for o in listed)
        for obj in objects:
            assert gateway.delete(obj["kind"], obj["metadata"]["name"])
    finally:
        reset_real(real_api_client)  # as admin: the worker may not touch ReplicaSets or pods


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("secrets in gco-inference", lambda api: client.CoreV1Api(api).list_namespaced_secret(INFERENCE_NS)),
        (
            "deleting pods in gco-inference",
            lambda api: client.CoreV1Api(api).delete_collection_namespaced_pod(INFERENCE_NS),
        ),
        (
            "watching pods in gco-inference",
            lambda api: client.CoreV1Api(api).list_namespaced_pod(
                INFERENCE_NS, watch=True, timeout_seconds=1
            ),
        ),
        ("pods in gco-system", lambda api: client.CoreV1Api(api).list_namespaced_pod(FLEET_NS)),
        ("deployments in gco-system", lambda api: client.AppsV1Api(api).list_namespaced_deployment(FLEET_NS)),
        ("services in default", lambda api: client.CoreV1Api(api).list_namespaced_service("default")),
        ("nodes (cluster-scoped)", lambda api: client.CoreV1Api(api).list_node()),
        ("namespaces", lambda api: client.CoreV1Api(api).list_namespace()),
        (
            "update (PUT) of a deployment",
            lambda api: client.AppsV1Api(api).replace_namespaced_deployment(
                "absent",
                INFERENCE_NS,
                {"metadata": {"name": "absent"}, "spec": {"selector": {}, "template": {}}},
            ),
        ),
        (
            "watch deployments",
            lambda api: client.AppsV1Api(api).list_namespaced_deployment(
                INFERENCE_NS, watch=True, timeout_seconds=1
            ),
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_the_worker_token_is_forbidden_everything_else(
    worker_api: client.ApiClient, what: str, call: Callable[[client.ApiClient], Any]
) -> None:
    with pytest.raises(ApiException) as refused:
        call(worker_api)
    assert refused.value.status == 403, f"{what}: {refused.value.status} {refused.value.reason}"


def test_a_fleet_with_the_worker_token_reconciles_an_endpoint(
    worker_api: client.ApiClient, real_api_client: client.ApiClient, redis_url: str, dynamodb_url: str
) -> None:
    reset_real(real_api_client)
    fleet = make_fleet(redis_url, worker_api)
    fleet.store.create_table()
    try:
        fleet.store.create(Endpoint.new("scoped", parse_spec({"image": "vllm/vllm-openai:v0.6.3"}), [REGION]))

        def running() -> bool:
            item = fleet.store.get_item("scoped") or {}
            return bool(item.get("region_status", {}).get(REGION, {}).get("state") == "running")

        converge(fleet, running)
    finally:
        fleet.state.client.close()
        reset_real(real_api_client)


def test_the_worker_token_reads_enough_to_explain_a_stuck_rollout(
    worker_api: client.ApiClient, real_api_client: client.ApiClient, redis_url: str, dynamodb_url: str
) -> None:
    """With only the Role's pods/replicasets reads, the fleet names the image its new pods cannot pull."""
    reset_real(real_api_client)
    fleet = make_fleet(redis_url, worker_api)
    fleet.store.create_table()
    try:
        spec = parse_spec({"image": "vllm/vllm-openai:unpullable"})
        fleet.store.create(Endpoint.new("blocked", spec, [REGION]))

        def explained() -> bool:
            item = fleet.store.get_item("blocked") or {}
            status = item.get("region_status", {}).get(REGION, {})
            return status.get("state") == "error" and "cannot be pulled" in str(status.get("error"))

        converge(fleet, explained)
        status = (fleet.store.get_item("blocked") or {})["region_status"][REGION]
        assert status["error"] == (
            "image vllm/vllm-openai:unpullable cannot be pulled on 1 of 1 new pods (ImagePullBackOff)"
        )
    finally:
        fleet.state.client.close()
        reset_real(real_api_client)
