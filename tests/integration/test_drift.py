"""Drift on both API servers: hand edits of the fields we set are reverted within one cycle, what others
set is left alone, and a converged region costs no write and no message, cycle after cycle.

The hand edits are made as people and other tools make them: strategic merge patches and a ``replace``
(PUT) under field managers of their own (``kubectl-edit``, ``kubectl-replace``, ``kubectl-annotate``,
``kubectl-rollout`` for ``kubectl rollout restart``'s template annotation). Requests are counted on the
client's side (``harness.RequestLog``), so the same count holds on both servers.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from gco_tasks.core.conventions import HEALTHCHECK_PATH_ANNOTATION
from gco_tasks.core.hint import Hint
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.triage import resync_cycles, resync_due
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, DynamoWrites, RequestLog, converge, run_cycle, wire

NAMESPACE = "gco-inference"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FOREIGN = "example.com/owner"
#: Quantities written as people write them; the API server stores them canonically ("1", "1Gi", ...).
ODD_QUANTITIES = {
    "requests": {"cpu": "1000m", "memory": "1024Mi"},
    "limits": {"cpu": "2.5", "memory": "8192Mi"},
}


def deploy(fleet: Fleet, name: str, **spec: Any) -> None:
    fields = {"image": "vllm/vllm-openai:v0.6.3", "gpu_count": 0, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), [REGION]))


def running(fleet: Fleet, *names: str) -> bool:
    for name in names:
        item = fleet.store.get_item(name) or {}
        if (item.get("region_status", {}).get(REGION) or {}).get("state") != "running":
            return False
    return True


def settle(fleet: Fleet) -> None:
    deploy(fleet, "demo", replicas=2, env={"MODE": "fast", "LEVEL": "1"}, args=["--x", "1"])
    deploy(fleet, "auto", autoscaling={"enabled": True, "min_replicas": 1, "max_replicas": 3})
    deploy(fleet, "odd", resources=ODD_QUANTITIES, port=8080)
    converge(fleet, lambda: running(fleet, "demo", "auto", "odd"), timeout=90)
    run_cycle(fleet)  # the promotions' writes are seen by one more cycle


def quiet_moment(names: list[str], interval: int, cycles: int, start: float) -> float:
    """A moment whose cycle is nobody's resync slot (so a steady cycle must send nothing at all)."""
    moment = start
    while any(resync_due(name, moment, interval, cycles) for name in names):
        moment += interval
    return moment


def test_a_converged_region_sends_nothing_and_writes_nothing_for_twenty_cycles(
    fleet: Fleet, cluster: Cluster, dynamo_writes: DynamoWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle(fleet)
    if cluster.real:  # the API server rewrote our quantities: the comparison must know they are equal
        odd = client.AppsV1Api(cluster.api_client).read_namespaced_deployment("odd", NAMESPACE)
        resources = odd.spec.template.spec.containers[0].resources
        assert (resources.requests, resources.limits) == (
            {"cpu": "1", "memory": "1Gi"},
            {"cpu": "2500m", "memory": "8Gi"},
        )
    requests = RequestLog(fleet, monkeypatch)
    dynamo_writes.calls.clear()
    interval = fleet.settings.reconcile_interval_seconds
    cycles = resync_cycles(fleet.settings.status_heartbeat_seconds, interval)
    for cycle in range(20):
        results = run_cycle(fleet)  # a resync slot may fall in one: a reconcile that writes nothing
        assert all(result["actions"] == [] for result in results), (cycle, results)
    assert requests.writes() == {}, requests.calls
    assert dynamo_writes.calls == []
    lists = sum(n for call, n in requests.calls.items() if call.startswith("GET ") and "/namespaces/" in call)
    assert lists >= 20 * 4
    # Away from any resync slot, a steady cycle sends no message at all: exactly the four LISTs.
    names = ["demo", "auto", "odd"]
    moment = quiet_moment(names, interval, cycles, start=time.time())
    requests.calls.clear()
    messages: list[str] = []
    outcome = fan_out(fleet, lambda name, _: messages.append(name), now=moment)
    assert messages == [] and outcome.in_sync == 3, outcome
    assert sum(requests.calls.values()) == 4, requests.calls


def test_hand_edits_of_our_fields_are_reverted_in_one_cycle_and_others_are_left_alone(
    fleet: Fleet, cluster: Cluster
) -> None:
    settle(fleet)
    api = cluster.api_client
    edit_deployment(api)
    edit_service(api)
    edit_ingress(api)
    client.AutoscalingV2Api(api).patch_namespaced_horizontal_pod_autoscaler(
        "auto", NAMESPACE, {"spec": {"maxReplicas": 9, "minReplicas": 2}}, field_manager="kubectl-edit"
    )
    results = {result["endpoint"]: result for result in run_cycle(fleet)}
    assert results["demo"]["actions"] == [
        "apply Deployment/demo",
        "apply Service/demo",
        "apply Ingress/inference-demo",
    ]
    assert results["auto"]["actions"] == ["apply HorizontalPodAutoscaler/auto"]
    assert_reverted(api)
    assert [r for r in run_cycle(fleet) if r["actions"]] == []  # and now steady


def edit_deployment(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    hand = {
        "spec": {
            "replicas": 5,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "inference",
                            "image": "vllm/vllm-openai:hand-edited",
                            "env": [{"name": "MODE", "value": "slow"}],
                            "args": ["--hand"],
                            "resources": {"requests": {"cpu": "2"}},
                        }
                    ]
                }
            },
        }
    }
    apps.patch_namespaced_deployment("demo", NAMESPACE, hand, field_manager="kubectl-edit")
    apps.patch_namespaced_deployment(
        "demo",
        NAMESPACE,
        {"metadata": {"annotations": {FOREIGN: "team-x"}}},
        field_manager="kubectl-annotate",
    )
    restart = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-01-01T00:00:00Z"}}}}}
    apps.patch_namespaced_deployment("demo", NAMESPACE, restart, field_manager="kubectl-rollout")


def edit_service(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    service = core.read_namespaced_service("demo", NAMESPACE)
    service.spec.ports[0].target_port = 9000
    service.metadata.annotations[HEALTHCHECK_PATH_ANNOTATION] = "/elsewhere"
    core.replace_namespaced_service("demo", NAMESPACE, service, field_manager="kubectl-replace")


def edit_ingress(api: client.ApiClient) -> None:
    backend = {"service": {"name": "demo", "port": {"number": 80}}}
    hand = {
        "metadata": {
            "annotations": {
                HEALTHCHECK_PATH_ANNOTATION: "/hacked",
                "alb.ingress.kubernetes.io/group.name": "x",
            }
        },
        "spec": {
            "rules": [{"http": {"paths": [{"path": "/other", "pathType": "Prefix", "backend": backend}]}}]
        },
    }
    client.NetworkingV1Api(api).patch_namespaced_ingress(
        "inference-demo", NAMESPACE, hand, field_manager="kubectl-edit"
    )


def assert_reverted(api: client.ApiClient) -> None:
    deployment = client.AppsV1Api(api).read_namespaced_deployment("demo", NAMESPACE)
    main = deployment.spec.template.spec.containers[0]
    assert deployment.spec.replicas == 2
    assert main.image == "vllm/vllm-openai:v0.6.3"
    assert [(e.name, e.value) for e in main.env] == [("MODE", "fast"), ("LEVEL", "1")]
    assert main.args[:2] == ["--x", "1"]
    assert main.resources.requests["cpu"] == "1"
    assert deployment.metadata.annotations[FOREIGN] == "team-x"  # another tool's annotation
    assert deployment.spec.template.metadata.annotations[RESTARTED_AT] == "2026-01-01T00:00:00Z"
    service = client.CoreV1Api(api).read_namespaced_service("demo", NAMESPACE)
    assert [(p.port, p.target_port) for p in service.spec.ports] == [(80, 8000)]
    assert service.metadata.annotations[HEALTHCHECK_PATH_ANNOTATION] == "/inference/demo/health"
    ingress = client.NetworkingV1Api(api).read_namespaced_ingress("inference-demo", NAMESPACE)
    assert ingress.spec.rules[0].http.paths[0].path == "/inference/demo"
    assert ingress.metadata.annotations[HEALTHCHECK_PATH_ANNOTATION] == "/inference/demo/health"
    assert ingress.metadata.annotations["alb.ingress.kubernetes.io/group.name"] == "x"
    hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("auto", NAMESPACE)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)


def test_a_stale_hint_is_rechecked_by_name_never_by_a_list(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cliff: a reconcile whose hint is older than an interval (the fan-out was slow, or the queue)
    reads its record and its objects by name: one GetItem and a few GETs, never a LIST."""
    settle(fleet)
    client.AppsV1Api(cluster.api_client).patch_namespaced_deployment(
        "demo", NAMESPACE, {"spec": {"replicas": 4}}, field_manager="kubectl-edit"
    )
    messages: list[tuple[str, Hint | None]] = []
    fan_out(fleet, lambda name, hint: messages.append((name, wire(hint))))
    hint = dict(messages)["demo"]
    assert hint is not None and hint.reason == "drift"
    requests = RequestLog(fleet, monkeypatch)
    late = hint.taken_at + 10 * fleet.settings.reconcile_interval_seconds
    result = reconcile(fleet, "demo", hint, now=late).as_dict()
    assert result["actions"] == ["apply Deployment/demo"]
    assert not [call for call in requests.calls if call.startswith("GET ") and call.endswith("s")], (
        requests.calls
    )
    gets = sum(n for call, n in requests.calls.items() if call.startswith("GET "))
    assert 1 <= gets <= 6, requests.calls
