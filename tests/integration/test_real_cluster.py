"""The fleet on real Kubernetes: what only the real control plane can show (``real_only``).

An endpoint record in DynamoDB (moto) becomes, through the fleet's cycles, a Deployment whose pods the
real scheduler places on a fake GPU node (kwok) and which become Ready; the record's region status then
reads ``running``. Node placement follows what the fleet renders (accelerator, capacity type); the HPA
controller enforces ``minReplicas``; and Kubernetes' own Deployment controller shows the rollout states
the stand-in does not model (a stuck rollout keeps the old pods serving; ``progressDeadlineSeconds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from gco_sandbox.controlplane import raw
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster, inference_pods

from .harness import REGION, converge, run_cycle

pytestmark = pytest.mark.real_only


def deploy(fleet: Fleet, name: str, **spec: Any) -> None:
    fields = {"image": "vllm/vllm-openai:v0.6.3", "replicas": 1, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), [REGION]))


def region_state(fleet: Fleet, name: str) -> dict[str, Any]:
    item = fleet.store.get_item(name) or {}
    return dict(item.get("region_status", {}).get(REGION, {}))


def running(fleet: Fleet, name: str) -> bool:
    return region_state(fleet, name).get("state") == "running"


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def nodes_where(cluster: Cluster, **wanted: str) -> set[str]:
    assert cluster.plane is not None
    return {
        node.name
        for node in cluster.plane.fake_nodes
        if all(getattr(node, key) == value for key, value in wanted.items())
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)


def deployment(cluster: Cluster, name: str) -> dict[str, Any]:
    apps = client.AppsV1Api(cluster.api_client)
    found: dict[str, Any] = raw(apps.read_namespaced_deployment, name, "gco-inference")
    return found


def test_an_endpoint_runs_on_a_fake_gpu_node_and_reports_running(fleet: Fleet, cluster: Cluster) -> None:
    deploy(fleet, "llama", replicas=2)
    converge(fleet, lambda: running(fleet, "llama"))
    pods = inference_pods(cluster.api_client, "app=llama")
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    gpu_nodes = nodes_where(cluster, accelerator="nvidia")
    for pod in pods:
        assert pod["spec"]["nodeName"] in gpu_nodes, pod["spec"].get("nodeName")
        assert ready(pod) and pod["status"]["phase"] == "Running"
        (container,) = pod["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    status = region_state(fleet, "llama")
    assert (status["replicas_ready"], status["replicas_desired"]) == (2, 2)
    assert fleet.store.get("llama").desired_state == "running"


def test_accelerator_and_capacity_type_choose_the_node(fleet: Fleet, cluster: Cluster) -> None:
    deploy(fleet, "bert", image="public.ecr.aws/neuron/tritonserver:24.05", accelerator="neuron")
    deploy(fleet, "cheap", capacity_type="spot")
    converge(fleet, lambda: running(fleet, "bert") and running(fleet, "cheap"))
    (bert,) = inference_pods(cluster.api_client, "app=bert")
    assert bert["spec"]["nodeName"] in nodes_where(cluster, accelerator="neuron")
    (cheap,) = inference_pods(cluster.api_client, "app=cheap")
    assert cheap["spec"]["nodeName"] in nodes_where(cluster, accelerator="nvidia", capacity_type="spot")


def test_the_hpa_controller_enforces_min_replicas_without_metrics(fleet: Fleet, cluster: Cluster) -> None:
    """No metrics server: the real HPA controller still scales a Deployment below ``minReplicas`` up to it
    (before any metric is read), so the endpoint runs at its minimum."""
    deploy(fleet, "chat", autoscaling={"enabled": True, "min_replicas": 2, "max_replicas": 4})
    converge(fleet, lambda: running(fleet, "chat") and region_state(fleet, "chat")["replicas_ready"] == 2)
    assert deployment(cluster, "chat")["spec"]["replicas"] == 2
    assert len([p for p in inference_pods(cluster.api_client, "app=chat") if ready(p)]) == 2


def test_a_stuck_rollout_keeps_the_old_pods_serving(fleet: Fleet, cluster: Cluster) -> None:
    """An update to an image that cannot be pulled: the new pod stays in ImagePullBackOff, the old one
    keeps serving, and the Deployment never reports the new ReplicaSet available."""
    deploy(fleet, "web")
    converge(fleet, lambda: running(fleet, "web"))
    (old,) = inference_pods(cluster.api_client, "app=web")
    fleet.store.update_spec("web", lambda spec: spec.with_changes(image="vllm/vllm-openai:unpullable"))
    run_cycle(fleet)

    def new_pod_backing_off() -> bool:
        pods = [
            p
            for p in inference_pods(cluster.api_client, "app=web")
            if p["metadata"]["name"] != old["metadata"]["name"]
        ]
        statuses = [c for p in pods for c in p["status"].get("containerStatuses") or []]
        return any((c["state"].get("waiting") or {}).get("reason") == "ImagePullBackOff" for c in statuses)

    wait_until(new_pod_backing_off, "the new pod in ImagePullBackOff")
    names = {p["metadata"]["name"]: p for p in inference_pods(cluster.api_client, "app=web")}
    assert old["metadata"]["name"] in names and ready(names[old["metadata"]["name"]])
    status = deployment(cluster, "web")["status"]
    assert (status["replicas"], status["updatedReplicas"], status.get("readyReplicas")) == (2, 1, 1)
    assert status.get("unavailableReplicas") == 1


def test_progress_deadline_exceeded_is_reported_by_the_deployment_controller(cluster: Cluster) -> None:
    """A Deployment whose pods never become Ready, with a 2 s progress deadline: the controller sets
    Progressing=False, reason ProgressDeadlineExceeded (the stand-in has no such state)."""
    body = crashing_deployment("stuck", progress_deadline_seconds=2)
    apps = client.AppsV1Api(cluster.api_client)
    raw(apps.create_namespaced_deployment, "gco-inference", body)

    def deadline_exceeded() -> bool:
        conditions = deployment(cluster, "stuck")["status"].get("conditions") or []
        return any(
            c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
        )

    wait_until(deadline_exceeded, "ProgressDeadlineExceeded")
    (pod,) = inference_pods(cluster.api_client, "app=stuck")
    (container,) = pod["status"]["containerStatuses"]
    assert container["restartCount"] > 0 and container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert not ready(pod)


def crashing_deployment(name: str, progress_deadline_seconds: int) -> dict[str, Any]:
    labels = {"app": name, "gco.io/type": "inference"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "server", "image": "example/crashloop:1"}],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }
