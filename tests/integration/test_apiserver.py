"""The sandbox API server through the official client: create, get, list, replace, delete, errors.
(The server is a local stand-in for Kubernetes; these tests pin the semantics the fleet relies on.)"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.apiserver import SandboxAPIServer

from .apiserver_helpers import NS, deployment, hpa, ingress, service, status_of


@pytest.fixture()
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


@pytest.fixture()
def core(kube_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


def test_starts_with_the_four_namespaces(core: client.CoreV1Api) -> None:
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert names == ["default", "gco-inference", "gco-system", "kube-system"]


def test_create_sets_server_fields(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment())
    meta = created.metadata
    assert meta.namespace == NS and meta.uid and meta.generation == 1 and meta.creation_timestamp
    assert int(meta.resource_version) > 0
    assert created.spec.replicas == 2
    other = apps.create_namespaced_deployment(NS, deployment("other"))
    assert int(other.metadata.resource_version) > int(meta.resource_version)
    assert other.metadata.uid != meta.uid


def test_create_errors(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    with pytest.raises(ApiException) as exists:
        apps.create_namespaced_deployment(NS, deployment())
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as no_ns:
        apps.create_namespaced_deployment("nowhere", deployment())
    assert no_ns.value.status == 404 and 'namespaces "nowhere" not found' in status_of(no_ns.value)["message"]
    with pytest.raises(ApiException) as bad_name:
        apps.create_namespaced_deployment(NS, deployment("Bad_Name"))
    assert bad_name.value.status == 422 and status_of(bad_name.value)["reason"] == "Invalid"
    with pytest.raises(ApiException) as bad_service_name:  # services need DNS-1035 labels
        core.create_namespaced_service(NS, service("1llm"))
    assert bad_service_name.value.status == 422


def _raw_post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_schema_validation_is_strict(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    # The typed client refuses replicas="two" itself, so the create goes raw; the apply goes through it.
    url = f"{apiserver.url}/apis/apps/v1/namespaces/{NS}/deployments"
    body = deployment()
    body["spec"]["replicas"] = "two"
    code, status = _raw_post(url, body)
    assert code == 422 and status["reason"] == "Invalid" and "spec.replicas" in str(status["message"])
    with pytest.raises(ApiException) as wrong_type:
        apps.patch_namespaced_deployment(
            "llm",
            NS,
            body,
            field_manager="gco-tasks",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    assert wrong_type.value.status == 422 and "spec.replicas" in status_of(wrong_type.value)["message"]
    body = deployment()
    body["spec"]["replica"] = 2
    code, status = _raw_post(url, body)
    assert code == 422 and "'replica' was unexpected" in str(status["message"])
    assert apps.list_namespaced_deployment(NS).items == []


def test_every_kind_round_trips(kube_client: client.ApiClient) -> None:
    core, net = client.CoreV1Api(kube_client), client.NetworkingV1Api(kube_client)
    scaling, coordination = client.AutoscalingV2Api(kube_client), client.CoordinationV1Api(kube_client)
    core.create_namespace({"metadata": {"name": "extra"}})
    assert core.read_namespace("extra").status.phase == "Active"
    assert core.create_namespaced_service(NS, service()).spec.cluster_ip
    assert net.create_namespaced_ingress(NS, ingress()).spec.ingress_class_name == "alb"
    assert scaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa()).spec.max_replicas == 4
    lease = {"metadata": {"name": "beat"}, "spec": {"holderIdentity": "w1", "leaseDurationSeconds": 15}}
    assert coordination.create_namespaced_lease("gco-system", lease).spec.holder_identity == "w1"
    event = {
        "metadata": {"name": "llm.17a"},
        "involvedObject": {"kind": "Deployment", "name": "llm"},
        "reason": "Applied",
        "message": "ok",
        "type": "Normal",
    }
    assert core.create_namespaced_event(NS, event).reason == "Applied"
    assert net.read_namespaced_ingress("inference-llm", NS).metadata.name == "inference-llm"
    assert [h.metadata.name for h in scaling.list_namespaced_horizontal_pod_autoscaler(NS).items] == ["llm"]


def test_get_missing_is_404(apps: client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", NS)
    body = status_of(missing.value)
    assert missing.value.status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "nope" not found'


def test_list_by_label_selector(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("a", labels={"app": "a", "gco.io/type": "inference"}))
    apps.create_namespaced_deployment(NS, deployment("b", labels={"app": "b", "gco.io/type": "inference"}))
    apps.create_namespaced_deployment(NS, deployment("c", labels={"app": "c", "tier": "batch"}))
    apps.create_namespaced_deployment(
        "default", deployment("d", labels={"app": "d", "gco.io/type": "inference"})
    )

    def names(selector: str, namespace: str = NS) -> list[str]:
        found = apps.list_namespaced_deployment(namespace, label_selector=selector).items
        return [d.metadata.name for d in found]

    assert names("gco.io/type=inference") == ["a", "b"]
    assert names("app==a") == ["a"]
    assert names("app!=a") == ["b", "c"]
    assert names("app in (a,c)") == ["a", "c"]
    assert names("app notin (a,c)") == ["b"]
    assert names("tier") == ["c"]
    assert names("!tier") == ["a", "b"]
    everywhere = apps.list_deployment_for_all_namespaces(label_selector="gco.io/type=inference").items
    assert [d.metadata.name for d in everywhere] == ["d", "a", "b"]  # sorted by namespace, then name


def test_list_with_preload_content_false_and_field_selector(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("a"))
    apps.create_namespaced_deployment(NS, deployment("b"))
    raw = apps.list_namespaced_deployment(NS, field_selector="metadata.name=b", _preload_content=False)
    body = json.loads(raw.data)
    assert body["kind"] == "DeploymentList" and body["apiVersion"] == "apps/v1"
    assert [item["metadata"]["name"] for item in body["items"]] == ["b"]
    assert int(body["metadata"]["resourceVersion"]) >= int(body["items"][0]["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as bad:
        apps.list_namespaced_deployment(NS, label_selector="app in (a")
    assert bad.value.status == 400


def test_list_pagination(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    for index in range(25):
        apps.create_namespaced_deployment(NS, deployment(f"d{index:02d}"), _preload_content=False)
    seen, token, pages = [], None, 0
    while True:
        page = apps.list_namespaced_deployment(NS, limit=10, _continue=token)
        seen += [d.metadata.name for d in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and seen == [f"d{index:02d}" for index in range(25)]
    assert apiserver.stats()["list deployments"] == 3


def test_replace_with_stale_resource_version_conflicts(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment())
    created.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("llm", NS, created)
    assert replaced.spec.replicas == 3 and replaced.metadata.generation == 2
    created.spec.replicas = 4  # still carries the first resourceVersion
    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_deployment("llm", NS, created)
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict"
    assert apps.read_namespaced_deployment("llm", NS).spec.replicas == 3


def test_generation_moves_only_with_spec(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    labelled = apps.patch_namespaced_deployment("llm", NS, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2
    same = apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 3}})
    assert same.metadata.resource_version == scaled.metadata.resource_version  # a no-op stores nothing


def test_delete_returns_status_then_404(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    deleted = apps.delete_namespaced_deployment("llm", NS)
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "llm"  # client 37: a plain dict
    with pytest.raises(ApiException) as again:
        apps.delete_namespaced_deployment("llm", NS)
    assert again.value.status == 404
    core.create_namespace({"metadata": {"name": "gone"}})
    apps.create_namespaced_deployment("gone", deployment())
    core.delete_namespace("gone")
    assert apps.list_deployment_for_all_namespaces(field_selector="metadata.namespace=gone").items == []


def test_dry_run_stores_nothing(apps: client.AppsV1Api) -> None:
    dry = apps.create_namespaced_deployment(NS, deployment(), dry_run="All")
    assert dry.metadata.name == "llm"
    assert apps.list_namespaced_deployment(NS).items == []
    apps.create_namespaced_deployment(NS, deployment())
    apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 9}}, dry_run="All")
    apps.patch_namespaced_deployment(
        "llm",
        NS,
        deployment(replicas=7),
        field_manager="gco-tasks",
        force=True,
        dry_run="All",
        _content_type="application/apply-patch+yaml",
    )
    apps.delete_namespaced_deployment("llm", NS, dry_run="All")
    assert apps.read_namespaced_deployment("llm", NS).spec.replicas == 2
