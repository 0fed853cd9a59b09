"""The sandbox's resource metrics API (``gco_sandbox/metrics_api.py``): what it reports for a pod, and
the paths and registration the aggregator and the HPA controller rely on."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from gco_sandbox.metrics_api import (
    GROUP_VERSION,
    USAGE_ANNOTATIONS,
    parse_path,
    pod_metrics,
    pod_metrics_list,
    registration,
    resource_list,
)

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def pod(name: str, phase: str = "Running", **usage: str) -> dict[str, Any]:
    annotations = {USAGE_ANNOTATIONS[resource]: value for resource, value in usage.items()}
    return {
        "metadata": {
            "name": name,
            "namespace": "gco-inference",
            "labels": {"app": name},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "inference"}, {"name": "sidecar"}]},
        "status": {"phase": phase},
    }


def test_each_container_of_a_running_annotated_pod_reports_the_usage() -> None:
    found = pod_metrics(pod("a", cpu="900m", memory="1Gi"), NOW)
    assert found is not None
    assert found["apiVersion"] == GROUP_VERSION and found["kind"] == "PodMetrics"
    assert found["timestamp"] == "2026-12-01T12:00:00Z" and found["window"] == "1s"
    assert found["containers"] == [
        {"name": "inference", "usage": {"cpu": "900m", "memory": "1Gi"}},
        {"name": "sidecar", "usage": {"cpu": "900m", "memory": "1Gi"}},
    ]


def test_a_pod_without_usage_or_not_running_has_no_metrics() -> None:
    """So an HPA over pods nobody annotated has no metrics at all and leaves the count alone."""
    assert pod_metrics(pod("quiet"), NOW) is None
    assert pod_metrics(pod("pending", phase="Pending", cpu="1"), NOW) is None
    listed = pod_metrics_list([pod("quiet"), pod("busy", cpu="2")], NOW)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["busy"]
    assert listed["kind"] == "PodMetricsList"


def test_paths_of_the_pods_resource() -> None:
    prefix = "/apis/metrics.k8s.io/v1beta1"
    assert parse_path(f"{prefix}/namespaces/gco-inference/pods") == ("gco-inference", None)
    assert parse_path(f"{prefix}/namespaces/gco-inference/pods/a") == ("gco-inference", "a")
    assert parse_path(f"{prefix}/pods") == (None, None)
    assert parse_path(f"{prefix}/nodes") is None
    assert parse_path("/apis") is None
    assert [r["name"] for r in resource_list()["resources"]] == ["pods"]


def test_registration_routes_the_group_to_loopback_with_the_ca() -> None:
    service, api_service = registration(4443, b"PEM")
    assert service["spec"] == {"type": "ExternalName", "externalName": "127.0.0.1"}
    assert api_service["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api_service["spec"]["service"] == {"namespace": "kube-system", "name": "gco-metrics", "port": 4443}
    assert base64.b64decode(api_service["spec"]["caBundle"]) == b"PEM"
    assert "insecureSkipTLSVerify" not in api_service["spec"]
