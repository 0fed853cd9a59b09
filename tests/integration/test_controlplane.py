"""The control plane launcher as the tests and the sandbox use it: what a started cluster has, how long a
warm start takes, a dying component being noticed, and a stop that leaves no process and no files."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any

import pytest
from kubernetes import client

from gco_sandbox.children import group_members
from gco_sandbox.controlplane import COMPONENTS, FAKE_NODES, ControlPlane, ControlPlaneError, Ports, raw
from gco_sandbox.services import free_port

START_BUDGET_SECONDS = 30.0


def test_the_session_cluster_is_kubernetes_with_the_fleets_namespaces_and_gpu_nodes(
    real_cluster: ControlPlane, real_api_client: client.ApiClient
) -> None:
    version = client.VersionApi(real_api_client).get_code()
    assert version.git_version == real_cluster.binaries.kube_apiserver.parent.parent.name.removeprefix(
        "kubernetes-"
    )
    core = client.CoreV1Api(real_api_client)
    namespaces = {item["metadata"]["name"] for item in raw(core.list_namespace)["items"]}
    assert {"default", "kube-system", "gco-system", "gco-inference"} <= namespaces
    accounts = raw(core.list_namespaced_service_account, "gco-inference")["items"]
    assert "gco-service-account" in {item["metadata"]["name"] for item in accounts}
    nodes: dict[str, Any] = {item["metadata"]["name"]: item for item in raw(core.list_node)["items"]}
    assert set(nodes) == {node.name for node in FAKE_NODES}
    for node in nodes.values():
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
    assert real_cluster.started_in < START_BUDGET_SECONDS
    print(f"session control plane started in {real_cluster.started_in:.1f}s: {real_cluster.timings}")


def test_the_metrics_api_reports_the_usage_a_pod_carries_through_the_aggregator(
    real_api_client: client.ApiClient,
) -> None:
    """``metrics.k8s.io`` answers through kube-apiserver (the APIService, TLS both ways): a Running pod
    with kwok's usage annotation has PodMetrics, one without has none (so an HPA over it does nothing)."""
    core = client.CoreV1Api(real_api_client)
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    names = {"busy": {"kwok.x-k8s.io/usage-cpu": "750m"}, "quiet": {}}
    try:
        for name, annotations in names.items():
            body = {
                "metadata": {
                    "name": f"metrics-{name}",
                    "labels": {"test": "metrics"},
                    "annotations": annotations,
                },
                "spec": {"containers": [{"name": "c", "image": "x"}], "tolerations": [toleration]},
            }
            raw(core.create_namespaced_pod, "gco-inference", body)
        path = "/apis/metrics.k8s.io/v1beta1/namespaces/gco-inference/pods"
        deadline = time.monotonic() + 30
        while True:
            listed = raw_get(real_api_client, path, {"labelSelector": "test=metrics"})
            if listed["items"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["metrics-busy"], listed
        assert listed["items"][0]["containers"] == [{"name": "c", "usage": {"cpu": "750m"}}]
    finally:
        for name in names:
            raw(core.delete_namespaced_pod, f"metrics-{name}", "gco-inference", grace_period_seconds=0)


def raw_get(api_client: client.ApiClient, path: str, query: dict[str, str]) -> Any:
    response = api_client.call_api(
        *api_client.param_serialize(
            "GET", path, query_params=list(query.items()), auth_settings=["BearerToken"]
        )
    )
    response.read()
    return json.loads(response.data)


def test_a_private_control_plane_starts_notices_a_dead_component_and_stops_clean() -> None:
    began = time.monotonic()
    plane = ControlPlane.start()
    try:
        print(f"warm start {time.monotonic() - began:.1f}s ({plane.timings})")
        assert plane.started_in < START_BUDGET_SECONDS
        pids = {child.name: child.pid for child in plane.children.started}
        assert set(pids) == set(COMPONENTS)
        plane.check_alive()
        os.killpg(pids["kwok"], signal.SIGKILL)
        next(c for c in plane.children.started if c.name == "kwok").process.wait(timeout=10)
        with pytest.raises(ControlPlaneError, match=r"kwok \(pid \d+\) exited"):
            plane.check_alive()
        assert "--- " in plane.logs_tail() and "kube-apiserver.log" in plane.logs_tail()
    finally:
        plane.stop()
    assert {name: group_members(pid) for name, pid in pids.items() if group_members(pid)} == {}
    assert not plane.workdir.exists(), "a temporary work directory is removed by stop()"
    plane.stop()  # idempotent


def test_a_port_taken_before_it_is_bound_makes_it_start_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free ports are only free when chosen: if one is taken before etcd binds it, start picks new ones."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        choices = iter([Ports(busy, free_port(), free_port(), free_port())])
        monkeypatch.setattr(Ports, "free", classmethod(lambda cls: next(choices, None) or cls(*free_ports())))
        with ControlPlane.start() as plane:
            assert plane.ports.etcd_client != busy
            plane.check_alive()


def free_ports() -> tuple[int, int, int, int]:
    return free_port(), free_port(), free_port(), free_port()
