"""The chaos check itself (``invariants.py``), on hand-written records and live objects: it passes a
converged region and names each kind of loss, so a scenario that ends in one cannot pass.

The objects are written here as Kubernetes would hold them, not rendered by the fleet.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .invariants import Scenario, problems

REGION, NAMESPACE = "us-east-1", "gco-inference"
LABELS = {"gco.io/type": "inference", "gco.io/endpoint": "alpha", "app": "alpha"}


def record(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "endpoint_name": "alpha",
        "desired_state": "running",
        "target_regions": [REGION],
        "ingress_path": "/inference/alpha",
        "updated_at": "2026-12-01T00:00:00+00:00",
        "spec": {
            "image": "nginx:1.27",
            "replicas": 2,
            "port": 8080,
            "env": {"MODEL": "alpha"},
            "args": ["--model", "/models/alpha"],
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        },
        "region_status": {REGION: {"state": "running", "observed_updated_at": "2026-12-01T00:00:00+00:00"}},
    }
    item.update(changes)
    return item


def deployment(name: str = "alpha", replicas: int = 2, image: str = "nginx:1.27") -> dict[str, Any]:
    container = {
        "name": "inference",
        "image": image,
        "args": ["--model", "/models/alpha", "--root-path", "/inference/alpha"],
        "env": [{"name": "MODEL", "value": "alpha"}],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": "4"}},
    }
    return {
        "metadata": {"name": name, "labels": dict(LABELS), "generation": 3},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}},
        "status": {
            "observedGeneration": 3,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        },
    }


def live(**extra: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    objects = {
        ("Deployment", "alpha"): deployment(),
        ("Service", "alpha"): {
            "metadata": {"name": "alpha", "labels": dict(LABELS)},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
        },
        ("Ingress", "inference-alpha"): {
            "metadata": {"name": "inference-alpha", "labels": dict(LABELS)},
            "spec": {
                "rules": [
                    {
                        "http": {
                            "paths": [{"path": "/inference/alpha", "backend": {"service": {"name": "alpha"}}}]
                        }
                    }
                ]
            },
        },
    }
    for key, obj in extra.items():
        kind, _, name = key.partition("__")
        objects[(kind, name)] = obj
    return objects


def check(items: list[dict[str, Any]], objects: dict[tuple[str, str], Any], **intents: str) -> list[str]:
    invalid = frozenset(name for name, intent in intents.items() if intent == "invalid")
    wanted = {name: ("running" if intent == "invalid" else intent) for name, intent in intents.items()}
    return problems(items, objects, Scenario(REGION, NAMESPACE, wanted, invalid))


def test_a_converged_region_passes() -> None:
    assert check([record()], live(), alpha="running") == []


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (lambda o: o[("Deployment", "alpha")]["spec"].update(replicas=1), "replicas 1, the record says 2"),
        (
            lambda o: o[("Deployment", "alpha")]["spec"]["template"]["spec"]["containers"][0].update(
                image="old"
            ),
            "image 'old', the record says 'nginx:1.27'",
        ),
        (
            lambda o: o[("Deployment", "alpha")]["spec"]["template"]["spec"]["containers"][0].update(env=[]),
            "env [], the record says ['MODEL']",
        ),
        (
            lambda o: o[("Deployment", "alpha")]["spec"]["template"]["spec"]["containers"][0].update(args=[]),
            "args [], the record says ['--model', '/models/alpha'] first",
        ),
        (
            lambda o: o[("Deployment", "alpha")]["spec"]["template"]["spec"]["containers"][0]["resources"][
                "requests"
            ].update(cpu="1"),
            "resources.requests.cpu '1', the record says '500m'",
        ),
        (lambda o: o[("Deployment", "alpha")]["status"].update(readyReplicas=1), "not rolled out"),
        (lambda o: o.pop(("Service", "alpha")), "Service/alpha missing"),
        (lambda o: o[("Service", "alpha")]["spec"].update(ports=[{"targetPort": 8000}]), "targetPort [8000]"),
        (
            lambda o: o[("Ingress", "inference-alpha")]["spec"]["rules"][0]["http"]["paths"][0].update(
                path="/x"
            ),
            "paths ['/x'], the record says '/inference/alpha'",
        ),
        (
            lambda o: o.update(
                {("HorizontalPodAutoscaler", "alpha"): {"metadata": {"labels": dict(LABELS)}}}
            ),
            "HorizontalPodAutoscaler/alpha should not exist",
        ),
        (
            lambda o: o[("Deployment", "alpha")]["metadata"].update(deletionTimestamp="2026-12-01T00:00:00Z"),
            "Deployment/alpha is being deleted",
        ),
    ],
    ids=[
        "replicas",
        "image",
        "env",
        "args",
        "resources",
        "not-ready",
        "missing",
        "port",
        "path",
        "extra-hpa",
        "deleting",
    ],
)
def test_each_field_the_record_sets_is_compared(change: Any, found: str) -> None:
    objects = live()
    change(objects)
    assert any(found in problem for problem in check([record()], objects, alpha="running")), found


def test_error_passes_only_for_a_record_made_invalid_on_purpose() -> None:
    stuck = record(region_status={REGION: {"state": "error", "error": "apply Deployment/alpha: 500"}})
    assert check([stuck], live(), alpha="running") == [
        "alpha: region state 'error', expected 'running': apply Deployment/alpha: 500"
    ]
    assert check([stuck], live(), alpha="invalid") == []
    silent = record(region_status={REGION: {"state": "error"}})
    assert check([silent], live(), alpha="invalid") != []


def test_a_stale_status_or_a_status_about_an_older_record_is_reported() -> None:
    stale = record(region_status={REGION: {"state": "updating"}})
    assert "region state 'updating', expected 'running'" in check([stale], live(), alpha="running")[0]
    older = copy.deepcopy(record())
    older["updated_at"] = "2026-12-02T00:00:00+00:00"
    assert "status is about 2026-12-01" in check([older], live(), alpha="running")[0]


def test_stopped_keeps_only_the_deployment_at_zero_and_its_service() -> None:
    stopped = record(desired_state="stopped", region_status={REGION: {"state": "stopped"}})
    objects = live()
    objects[("Deployment", "alpha")] = deployment(replicas=0)
    assert check([stopped], objects, alpha="stopped") == [
        "alpha: Ingress/inference-alpha should not exist (stopped)"
    ]
    del objects[("Ingress", "inference-alpha")]
    assert check([stopped], objects, alpha="stopped") == []


def test_deletion_counts_only_once_the_record_is_purged_and_nothing_is_left() -> None:
    deleting = record(desired_state="deleted", region_status={REGION: {"state": "deleted"}})
    assert check([deleting], {}, alpha="deleted") == [
        "alpha: deleted but its record is not purged (region state 'deleted')"
    ]
    assert check([], live(), alpha="deleted") == [
        "alpha: deleted but objects remain: ['Deployment/alpha', 'Ingress/inference-alpha', 'Service/alpha']"
    ]
    assert check([], {}, alpha="deleted") == []


def test_records_and_objects_nobody_asked_for_are_reported() -> None:
    assert check([], live(), alpha="running") == ["alpha: record gone although it was never deleted"]
    found = check([record(), record(endpoint_name="ghost")], live(), alpha="running")
    assert found == ["ghost: a record the scenario never wrote"]
    orphan = deployment("beta")
    orphan["metadata"]["labels"] = {**LABELS, "gco.io/endpoint": "beta", "app": "beta"}
    assert check([record()], live(Deployment__beta=orphan), alpha="running") == [
        "beta: Deployment/beta exists without a record"
    ]
