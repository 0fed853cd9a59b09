"""Patches and server-side apply against the sandbox API server (a local stand-in for Kubernetes),
through the official client exactly as the fleet calls it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from .apiserver_helpers import NS, deployment, hpa, ingress, service, status_of

APPLY = "application/apply-patch+yaml"


@pytest.fixture()
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


def apply_deployment(apps: client.AppsV1Api, body: dict[str, Any], manager: str = "gco-tasks") -> Any:
    name = body["metadata"]["name"]
    return apps.patch_namespaced_deployment(
        name, NS, body, field_manager=manager, force=True, _content_type=APPLY
    )


def container(obj: Any) -> Any:
    return obj.spec.template.spec.containers[0]


def test_merge_patch(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    patch = {"metadata": {"labels": {"project": None, "new": "x"}}, "spec": {"template": {"spec": {
        "containers": [{"name": "only", "image": "i"}]}}}}  # fmt: skip
    patched = apps.patch_namespaced_deployment("llm", NS, patch, _content_type="application/merge-patch+json")
    assert patched.metadata.labels == {"app": "llm", "gco.io/type": "inference", "new": "x"}
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]  # lists are replaced


def test_strategic_merge_patch_merges_by_key(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "server", "env": [{"name": "EXTRA", "value": "1"}]},
                       {"name": "sidecar", "image": "envoy"}],
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "volumes": [{"name": "cache", "emptyDir": {}}]}}}}  # fmt: skip
    patched = apps.patch_namespaced_deployment("llm", NS, patch)  # the client's default: strategic merge
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["server", "sidecar"]
    assert [e.name for e in containers[0].env] == ["MODEL", "EXTRA"]
    assert containers[0].image == "vllm/vllm-openai:v0.6"
    again = apps.patch_namespaced_deployment(
        "llm",
        NS,
        {"spec": {"template": {"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert [t.key for t in again.spec.template.spec.tolerations] == ["spot"]  # atomic upstream too


def test_json_patch(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 4},
           {"op": "add", "path": "/metadata/labels/extra", "value": "yes"}]  # fmt: skip
    patched = apps.patch_namespaced_deployment("llm", NS, ops, _content_type="application/json-patch+json")
    assert patched.spec.replicas == 4 and patched.metadata.labels["extra"] == "yes"
    with pytest.raises(ApiException) as failed:
        apps.patch_namespaced_deployment("llm", NS, [{"op": "test", "path": "/spec/replicas", "value": 1}],
                                         _content_type="application/json-patch+json")  # fmt: skip
    assert failed.value.status == 422


def test_apply_creates_then_updates(apps: client.AppsV1Api) -> None:
    raw = apps.patch_namespaced_deployment("llm", NS, deployment(), field_manager="gco-tasks", force=True,
                                           _content_type=APPLY, _preload_content=False)  # fmt: skip
    assert raw.status == 201
    obj = apps.read_namespaced_deployment("llm", NS)
    entry = obj.metadata.managed_fields[0]
    assert (entry.manager, entry.operation, entry.api_version, entry.fields_type) == (
        "gco-tasks", "Apply", "apps/v1", "FieldsV1")  # fmt: skip
    assert 'k:{"name":"server"}' in entry.fields_v1["f:spec"]["f:template"]["f:spec"]["f:containers"]
    updated = apply_deployment(apps, deployment(image="vllm/vllm-openai:v0.7"))
    assert container(updated).image == "vllm/vllm-openai:v0.7" and updated.metadata.generation == 2
    unchanged = apply_deployment(apps, deployment(image="vllm/vllm-openai:v0.7"))
    assert unchanged.metadata.resource_version == updated.metadata.resource_version


def test_apply_accepts_yaml_bodies(kube_client: client.ApiClient, apiserver: Any) -> None:
    import urllib.request

    import yaml

    body = yaml.safe_dump(service("yaml-svc")).encode()
    url = f"{apiserver.url}/api/v1/namespaces/{NS}/services/yaml-svc?fieldManager=gco-tasks&force=true"
    request = urllib.request.Request(url, data=body, method="PATCH", headers={"Content-Type": APPLY})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
    assert client.CoreV1Api(kube_client).read_namespaced_service("yaml-svc", NS).spec.ports[0].port == 80


def test_apply_needs_a_field_manager(kube_client: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_client)
    with pytest.raises(ApiException) as missing:
        core.patch_namespaced_service("llm", NS, service(), _content_type=APPLY)
    assert missing.value.status == 422 and "fieldManager" in status_of(missing.value)["message"]


def test_apply_every_kind_the_fleet_writes(kube_client: client.ApiClient) -> None:
    core, net = client.CoreV1Api(kube_client), client.NetworkingV1Api(kube_client)
    scaling = client.AutoscalingV2Api(kube_client)
    opts: dict[str, Any] = {"field_manager": "gco-tasks", "force": True, "_content_type": APPLY}
    assert core.patch_namespaced_service("llm", NS, service(), **opts).spec.ports[0].port == 80
    assert (
        net.patch_namespaced_ingress("inference-llm", NS, ingress(), **opts).spec.ingress_class_name == "alb"
    )
    created = scaling.patch_namespaced_horizontal_pod_autoscaler("llm", NS, hpa(), **opts)
    assert created.spec.max_replicas == 4
    moved = core.patch_namespaced_service("llm", NS, service(port=8080), **opts)
    assert [p.port for p in moved.spec.ports] == [8080]  # the old port (applied before, not now) is gone
    core.delete_namespaced_service("llm", NS)
    net.delete_namespaced_ingress("inference-llm", NS)
    scaling.delete_namespaced_horizontal_pod_autoscaler("llm", NS)
    assert core.list_namespaced_service(NS).items == []


def test_apply_removes_what_the_manager_stopped_sending(apps: client.AppsV1Api) -> None:
    canary = deployment(labels={"app": "llm", "track": "canary"})
    canary["spec"]["template"]["spec"]["containers"].append({"name": "probe", "image": "probe"})
    apply_deployment(apps, canary)
    rolled_back = apply_deployment(apps, deployment(labels={"app": "llm"}))
    assert rolled_back.metadata.labels == {"app": "llm"}
    assert [c.name for c in rolled_back.spec.template.spec.containers] == ["server"]


def test_replicas_from_the_scale_subresource_survive_apply(apps: client.AppsV1Api) -> None:
    apply_deployment(apps, deployment(replicas=2))
    scale = apps.patch_namespaced_deployment_scale("llm", NS, {"spec": {"replicas": 5}}, field_manager="hpa")
    assert scale.spec.replicas == 5 and scale.kind == "Scale"
    entries = {
        (e.manager, e.subresource): e
        for e in apps.read_namespaced_deployment("llm", NS).metadata.managed_fields
    }
    assert entries[("hpa", "scale")].fields_v1 == {"f:spec": {"f:replicas": {}}}
    applied = apply_deployment(apps, deployment(replicas=None, image="vllm/vllm-openai:v0.7"))
    assert applied.spec.replicas == 5 and container(applied).image == "vllm/vllm-openai:v0.7"
    assert apps.read_namespaced_deployment_scale("llm", NS).spec.replicas == 5
    replaced = apps.replace_namespaced_deployment_scale(
        "llm", NS, {"spec": {"replicas": 1}, "metadata": {"name": "llm"}}
    )
    assert replaced.spec.replicas == 1


def test_apply_conflicts_without_force(apps: client.AppsV1Api) -> None:
    apply_deployment(apps, deployment(replicas=2), manager="kubectl")
    with pytest.raises(ApiException) as conflict:
        apps.patch_namespaced_deployment("llm", NS, deployment(replicas=3), field_manager="gco-tasks",
                                         _content_type=APPLY)  # fmt: skip
    assert conflict.value.status == 409 and "spec.replicas" in status_of(conflict.value)["message"]
    assert apply_deployment(apps, deployment(replicas=3)).spec.replicas == 3


def test_apply_without_replicas_and_no_other_owner_defaults_to_one(apps: client.AppsV1Api) -> None:
    apply_deployment(apps, deployment(replicas=3))
    assert apply_deployment(apps, deployment(replicas=None)).spec.replicas == 1


def test_status_subresource(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    ignored = apps.patch_namespaced_deployment("llm", NS, {"status": {"readyReplicas": 9}})
    assert ignored.status.ready_replicas is None  # the main resource ignores status
    patched = apps.patch_namespaced_deployment_status("llm", NS, {"status": {"readyReplicas": 9}})
    assert patched.status.ready_replicas == 9 and patched.metadata.generation == 1
