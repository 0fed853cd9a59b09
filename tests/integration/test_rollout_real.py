"""Status follows the rollout on real Kubernetes (``real_only``: the stand-in has no ReplicaSets or pods).

The Deployment and ReplicaSet controllers roll the pods, the scheduler places them on kwok's fake GPU
nodes, and kwok keeps an image containing ``unpullable`` in ImagePullBackOff. The fleet must report
``updating`` while a rollout runs, ``error`` with a reason a person can act on when it cannot go on,
and ``running`` only once every pod runs the current template and is Ready: never while an old
ReplicaSet still serves. Every cycle's report is checked against the pods as they are at that moment.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from gco_sandbox.controlplane import raw
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster, inference_pods

from .harness import REGION, converge, make_fleet, run_cycle, wait_for

pytestmark = pytest.mark.real_only

IMAGE = "vllm/vllm-openai:v0.6.3"
BAD_IMAGE = "vllm/vllm-openai:unpullable"
FIXED_IMAGE = "vllm/vllm-openai:v0.6.4"


def deploy(fleet: Fleet, name: str, **spec: Any) -> None:
    fleet.store.create(Endpoint.new(name, parse_spec({"image": IMAGE, "replicas": 2, **spec}), [REGION]))


def status(fleet: Fleet, name: str) -> dict[str, Any]:
    item = fleet.store.get_item(name) or {}
    return dict(item.get("region_status", {}).get(REGION, {}))


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def image_of(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def live_pods(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """The endpoint's pods not being deleted (a terminating pod has left the Service's endpoints)."""
    pods = inference_pods(cluster.api_client, f"app={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def serving_images(cluster: Cluster, name: str) -> list[str]:
    """The images of the pods that are Ready (serving) now."""
    return sorted(image_of(p) for p in live_pods(cluster, name) if ready(p))


def test_a_stuck_image_is_updating_then_an_error_and_running_only_once_fixed_pods_serve(
    fleet: Fleet, cluster: Cluster
) -> None:
    deploy(fleet, "web")
    converge(fleet, lambda: status(fleet, "web").get("state") == "running")
    fleet.store.update_spec("web", lambda spec: spec.with_changes(image=BAD_IMAGE))
    seen: list[str] = []

    def cycle() -> str:
        run_cycle(fleet)
        report = status(fleet, "web")
        seen.append(report["state"])
        assert report["state"] != "running", f"running while {serving_images(cluster, 'web')} serve"
        return str(report["state"])

    wait_for(lambda: cycle() == "error", "the region to report the stuck rollout", timeout=60)
    assert seen[0] == "updating", seen
    assert status(fleet, "web")["error"] == (
        f"image {BAD_IMAGE} cannot be pulled on 1 of 1 new pods (ImagePullBackOff)"
    )
    assert serving_images(cluster, "web") == [IMAGE, IMAGE], "the old pods keep serving meanwhile"
    assert fleet.store.get("web").desired_state == "deploying", "no promotion while it is stuck"

    fleet.store.update_spec("web", lambda spec: spec.with_changes(image=FIXED_IMAGE))

    def running_only_when_new_pods_serve() -> bool:
        run_cycle(fleet)
        if status(fleet, "web").get("state") != "running":
            return False
        pods = live_pods(cluster, "web")
        assert [image_of(p) for p in pods] == [FIXED_IMAGE, FIXED_IMAGE], "an old pod is left"
        assert all(ready(p) for p in pods)
        return True

    wait_for(running_only_when_new_pods_serve, "running on the fixed image", timeout=60)
    report = status(fleet, "web")
    assert (report["replicas_ready"], report["replicas_desired"], report["replicas_updated"]) == (2, 2, 2)
    assert "error" not in report
    converge(fleet, lambda: fleet.store.get("web").desired_state == "running")


def test_pods_that_fit_no_node_wait_for_one_then_are_an_error_quoting_the_scheduler(
    fleet: Fleet, redis_url: str, cluster: Cluster
) -> None:
    deploy(fleet, "huge", replicas=1, gpu_count=9)  # the fake nodes have 8 GPUs each

    def placed_nowhere() -> bool:
        run_cycle(fleet)
        return any(unschedulable(pod) for pod in live_pods(cluster, "huge"))

    wait_for(placed_nowhere, "the scheduler to find no node for the pod")
    run_cycle(fleet)  # within UNSCHEDULABLE_GRACE_SECONDS (300): a node may be on its way
    assert status(fleet, "huge").get("state") == "creating", status(fleet, "huge")
    impatient = make_fleet(redis_url, cluster.api_client, unschedulable_grace_seconds=0)
    converge(impatient, lambda: status(fleet, "huge").get("state") == "error")
    error = status(fleet, "huge")["error"]
    assert error.startswith("0 of 1 new pods can be scheduled: 0/4 nodes are available: "), error
    assert "Insufficient nvidia.com/gpu" in error


def unschedulable(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)


def test_a_crash_loop_is_an_error_naming_the_container(fleet: Fleet) -> None:
    deploy(fleet, "crashy", replicas=1, image="example/crashloop:1")
    converge(fleet, lambda: status(fleet, "crashy").get("state") == "error")
    assert status(fleet, "crashy")["error"] == (
        "container inference (image example/crashloop:1) keeps crashing on 1 of 1 new pods "
        "(CrashLoopBackOff, last exit code 1)"
    )


def test_a_missing_service_account_is_an_error_with_the_api_servers_message(
    redis_url: str, dynamodb_url: str, cluster: Cluster
) -> None:
    fleet = make_fleet(redis_url, cluster.api_client, inference_service_account="missing-sa")
    fleet.store.create_table()
    try:
        deploy(fleet, "nosa", replicas=1)
        converge(fleet, lambda: status(fleet, "nosa").get("state") == "error")
        error = status(fleet, "nosa")["error"]
        assert error.startswith('pods cannot be created: pods "nosa-'), error
        assert 'serviceaccount "missing-sa" not found' in error
        apps = client.AppsV1Api(cluster.api_client)
        live = raw(apps.read_namespaced_deployment, "nosa", "gco-inference")
        assert any(c["type"] == "ReplicaFailure" for c in live["status"]["conditions"])
    finally:
        fleet.state.client.close()


def test_a_steady_endpoint_reads_no_pods(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pods and ReplicaSets are read only while a rollout is unfinished: a running region reads none."""
    deploy(fleet, "calm")
    converge(fleet, lambda: status(fleet, "calm").get("state") == "running")
    paths: list[str] = []
    rest = fleet.cluster.api_client.rest_client
    send = rest.request

    def logged(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        paths.append(url)
        return send(method, url, *args, **kwargs)

    monkeypatch.setattr(rest, "request", logged)
    for _ in range(3):
        run_cycle(fleet)
    assert paths and not [p for p in paths if "/pods" in p or "/replicasets" in p], paths
