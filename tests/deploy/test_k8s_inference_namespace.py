"""k8s/inference-namespace: the inference namespace's ResourceQuota and LimitRange, rendered by
`kubectl kustomize` and validated strictly, plus the Pod Security Admission labels the README's command
sets (docs/security.md). No Namespace object is shipped (`kubectl delete -k` must never remove one)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity as quantity_value

from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint

from .test_k8s_manifests import _kubectl

REPO = Path(__file__).resolve().parents[2]
DIRECTORY = REPO / "k8s" / "inference-namespace"
NAMESPACE = "gco-inference"
PSA = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> dict[str, Obj]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(DIRECTORY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    return {obj["kind"]: obj for obj in rendered}


def test_only_a_quota_and_a_limit_range_in_the_inference_namespace(objects: dict[str, Obj]) -> None:
    assert sorted(objects) == ["LimitRange", "ResourceQuota"], "no Namespace: it is labelled, not owned"
    for obj in objects.values():
        assert obj["metadata"]["namespace"] == NAMESPACE
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


def test_quota_caps_compute_and_devices_and_forbids_exposed_services(objects: dict[str, Obj]) -> None:
    hard = objects["ResourceQuota"]["spec"]["hard"]
    for key in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods"):
        assert quantity_value(str(hard[key])) > 0, key
    for device in ("nvidia.com/gpu", "aws.amazon.com/neuron"):
        assert quantity_value(str(hard[f"requests.{device}"])) > 0, "extended resources: requests only"
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"


def test_limit_range_defaults_fit_under_its_maximum(objects: dict[str, Obj]) -> None:
    (limits,) = objects["LimitRange"]["spec"]["limits"]
    assert limits["type"] == "Container"
    for resource in ("cpu", "memory"):
        request = quantity_value(limits["defaultRequest"][resource])
        default = quantity_value(limits["default"][resource])
        assert 0 < request <= default <= quantity_value(limits["max"][resource]), resource


def test_the_fleets_default_endpoint_is_admitted_by_the_limit_range(objects: dict[str, Obj]) -> None:
    """Containers the fleet renders with default resources (and the model-sync init container) stay under
    the LimitRange's maximum, so a plain record is never refused by the namespace's own guard rails."""
    (limits,) = objects["LimitRange"]["spec"]["limits"]
    item = {
        "endpoint_name": "plain",
        "target_regions": ["us-east-1"],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "gpu_count": 1, "model_source": "s3://bucket-1/m/"},
    }
    rendered = render_endpoint(Endpoint.from_item(item), "us-east-1", RenderOptions())
    (deployment,) = [obj for obj in rendered if obj["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    assert len(containers) == 2, "the inference container and the model-sync init container"
    for container in containers:
        for resource in ("cpu", "memory"):
            limit = container["resources"]["limits"][resource]
            assert quantity_value(limit) <= quantity_value(limits["max"][resource]), container["name"]


def test_readme_gives_the_pod_security_label_command() -> None:
    """The labels go on the existing namespace with one `kubectl label` command (docs/security.md and
    the kustomization's header say the same); enforce baseline, warn and audit restricted."""
    guide = (REPO / "docs" / "security.md").read_text()
    for text in (guide, (DIRECTORY / "kustomization.yaml").read_text()):
        command = re.search(
            r"kubectl label --overwrite namespace gco-inference((?:\s*\\?\s*#?\s*[\w./-]+=\w+)+)", text
        )
        assert command, "no `kubectl label --overwrite namespace gco-inference ...` command"
        labels = dict(pair.split("=") for pair in re.findall(r"[\w./-]+=\w+", command.group(1)))
        assert labels == PSA
    assert "kubectl apply -k k8s/inference-namespace" in guide
