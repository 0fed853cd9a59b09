"""The sandbox API server's simulation and operator controls (readiness, stats, faults, dump, reset),
discovery for ``DynamicClient``, and its lifecycle. The server is a local stand-in for Kubernetes."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient

from gco_sandbox.apiserver import SandboxAPIServer

from .apiserver_helpers import NS, deployment, service, status_of


@pytest.fixture()
def apps(kube_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_client)


def operator(server: SandboxAPIServer, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wait_for(predicate: Any, timeout: float = 3.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


class SteppedClock:
    """The API server's clock, moved by the test: "not ready yet" is a fact, not a race with 0.2 s."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_readiness_follows_spec_after_the_delay(
    apps: client.AppsV1Api, apiserver: SandboxAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppedClock()
    monkeypatch.setattr(apiserver.store, "clock", clock)  # restored after the test
    delay = apiserver.store.ready_delay
    created = apps.create_namespaced_deployment(NS, deployment(replicas=3))
    assert created.status.ready_replicas is None
    clock.now += delay * 0.9
    assert apps.read_namespaced_deployment("llm", NS).status.ready_replicas is None, "not before the delay"
    clock.now += delay * 0.2
    assert apps.read_namespaced_deployment("llm", NS).status.ready_replicas == 3, "ready once it passed"
    monkeypatch.undo()  # real time again for the rest
    status = apps.read_namespaced_deployment("llm", NS).status
    assert (status.replicas, status.available_replicas, status.updated_replicas) == (3, 3, 3)
    assert status.observed_generation == 1
    scaled = apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 0}})
    assert scaled.status.observed_generation == 1 and scaled.metadata.generation == 2
    wait_for(lambda: apps.read_namespaced_deployment("llm", NS).status.observed_generation == 2)
    status = apps.read_namespaced_deployment("llm", NS).status
    assert not status.ready_replicas and not status.replicas


def test_crashloop_images_never_become_ready(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment(image="registry/crashloop:1"))
    wait_for(lambda: apps.read_namespaced_deployment("llm", NS).status.observed_generation == 1)
    time.sleep(0.3)
    status = apps.read_namespaced_deployment("llm", NS).status
    assert status.replicas == 2 and not status.ready_replicas and status.unavailable_replicas == 2
    available = next(c for c in status.conditions if c.type == "Available")
    assert available.status == "False"


def test_settled_status_has_its_own_resource_version_and_manager(apps: client.AppsV1Api) -> None:
    created = apps.create_namespaced_deployment(NS, deployment())
    wait_for(lambda: apps.read_namespaced_deployment("llm", NS).status.ready_replicas == 2)
    ready = apps.read_namespaced_deployment("llm", NS)
    assert int(ready.metadata.resource_version) > int(created.metadata.resource_version)
    managers = {(e.manager, e.subresource) for e in ready.metadata.managed_fields}
    assert ("kube-controller-manager", "status") in managers


def test_stats_count_every_verb(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    core = client.CoreV1Api(apps.api_client)
    apps.create_namespaced_deployment(NS, deployment())
    apps.read_namespaced_deployment("llm", NS)
    apps.list_namespaced_deployment(NS, label_selector="app=llm")
    apps.patch_namespaced_deployment("llm", NS, {"spec": {"replicas": 1}})
    apps.patch_namespaced_deployment("llm", NS, deployment(), field_manager="gco-tasks", force=True,
                                     _content_type="application/apply-patch+yaml")  # fmt: skip
    apps.replace_namespaced_deployment("llm", NS, apps.read_namespaced_deployment("llm", NS))
    apps.patch_namespaced_deployment_scale("llm", NS, {"spec": {"replicas": 3}})
    core.patch_namespaced_service("llm", NS, service(), field_manager="gco-tasks", force=True,
                                  _content_type="application/apply-patch+yaml")  # fmt: skip
    apps.delete_namespaced_deployment("llm", NS)
    expected = {"create deployments": 1, "get deployments": 2, "list deployments": 1, "patch deployments": 1,
                "apply deployments": 1, "update deployments": 1, "patch deployments/scale": 1,
                "apply services": 1, "delete deployments": 1}  # fmt: skip
    assert operator(apiserver, "GET", "/_sandbox/stats") == expected == apiserver.stats()
    operator(apiserver, "POST", "/_sandbox/stats/reset")
    assert apiserver.stats() == {}


def test_faults_fail_then_clear(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    operator(apiserver, "POST", "/_sandbox/faults", {"verb": "get", "resource": "deployments", "status": 500,
                                                     "count": 2})  # fmt: skip
    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            apps.read_namespaced_deployment("llm", NS)
        assert failed.value.status == 500 and status_of(failed.value)["reason"] == "InternalError"
    assert apps.read_namespaced_deployment("llm", NS).metadata.name == "llm"  # count used up
    operator(apiserver, "POST", "/_sandbox/faults", {"verb": "list", "resource": "deployments", "status": 429,
                                                     "count": 5})  # fmt: skip
    with pytest.raises(ApiException) as throttled:
        apps.list_namespaced_deployment(NS)
    assert throttled.value.status == 429
    assert operator(apiserver, "DELETE", "/_sandbox/faults") == {"faults": []}
    assert len(apps.list_namespaced_deployment(NS).items) == 1


def test_faults_by_name_and_delay(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    apps.create_namespaced_deployment(NS, deployment("a"))
    apps.create_namespaced_deployment(NS, deployment("b"))
    apiserver.add_fault(verb="get", resource="deployments", name="b", status=503)
    assert apps.read_namespaced_deployment("a", NS).metadata.name == "a"
    with pytest.raises(ApiException) as unavailable:
        apps.read_namespaced_deployment("b", NS)
    assert unavailable.value.status == 503
    operator(
        apiserver, "POST", "/_sandbox/faults", {"verb": "get", "resource": "deployments", "delay_ms": 300}
    )
    start = time.monotonic()
    assert apps.read_namespaced_deployment("b", NS).metadata.name == "b"  # stalled, then served
    assert time.monotonic() - start >= 0.3


def test_objects_dump_and_reset(apps: client.AppsV1Api, apiserver: SandboxAPIServer) -> None:
    apps.create_namespaced_deployment(NS, deployment())
    apiserver.add_fault(verb="get", resource="deployments", status=500)
    dump = operator(apiserver, "GET", "/_sandbox/objects")
    assert [d["metadata"]["name"] for d in dump["deployments"]] == ["llm"]
    assert len(dump["namespaces"]) == 4
    operator(apiserver, "POST", "/_sandbox/reset")
    assert apiserver.stats() == {} and apps.list_namespaced_deployment(NS).items == []
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("llm", NS)  # 404, not the (cleared) injected 500
    assert gone.value.status == 404


def test_discovery_is_enough_for_dynamic_client(kube_client: client.ApiClient) -> None:
    dynamic = DynamicClient(kube_client)
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.create(body=deployment(), namespace=NS)
    assert deployments.get(name="llm", namespace=NS).spec.replicas == 2
    hpas = dynamic.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
    assert hpas.get(namespace=NS).items == []
    services = dynamic.resources.get(api_version="v1", kind="Service")
    applied = services.server_side_apply(
        body=service(), namespace=NS, field_manager="gco-tasks", force_conflicts=True
    )
    assert applied.spec.ports[0].port == 80
    version = client.VersionApi(kube_client).get_code()
    assert version.git_version.startswith("v1.30.0")


def test_stop_frees_the_port() -> None:
    server = SandboxAPIServer(port=0).start()
    port = server.port
    api = client.ApiClient(client.Configuration(host=server.url))
    assert client.CoreV1Api(api).list_namespace().items  # a keep-alive connection is open
    server.stop()
    api.close()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with SandboxAPIServer(port=port) as again:
        assert again.port == port and again.stats() == {}
