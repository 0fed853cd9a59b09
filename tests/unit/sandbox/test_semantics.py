"""The stand-in's checks beyond the JSON schemas (``gco_sandbox/semantics.py``), pure. The same
cases run against the real API server in tests/integration/test_conformance.py."""

from __future__ import annotations

from typing import Any

import pytest

from gco_sandbox.apply import apply
from gco_sandbox.semantics import semantic_error


def deployment(**pod: Any) -> dict[str, Any]:
    labels = {"app": "x"}
    return {
        "kind": "Deployment",
        "metadata": {"name": "x", "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [], **pod}},
        },
    }


def test_a_valid_deployment_passes() -> None:
    assert semantic_error(deployment(nodeSelector={"accelerator": "neuron"})) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["metadata"]["labels"].update(team="x" * 64), "metadata.labels: Invalid value"),
        (lambda d: d["metadata"]["labels"].update({"bad key": "x"}), "name part must consist"),
        (lambda d: d["spec"]["selector"]["matchLabels"].update(app="y"), "`selector` does not match"),
        (lambda d: d["spec"]["template"]["spec"].update(nodeSelector={"k": "-bad"}), "nodeSelector"),
        (
            lambda d: d["spec"]["template"]["spec"].update(
                tolerations=[
                    {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 1}
                ]
            ),
            "effect must be 'NoExecute'",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(tolerations=[{"operator": "Equal"}]),
            "must be Exists",
        ),
    ],
)
def test_what_kube_apiserver_refuses_is_refused(change: Any, words: str) -> None:
    bad = deployment()
    change(bad)
    error = semantic_error(bad)
    assert error is not None and words in error


def test_a_deployment_selector_is_immutable() -> None:
    old = deployment()
    new = deployment()
    new["spec"]["selector"]["matchLabels"]["tier"] = "a"
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "a"
    assert semantic_error(new) is None
    assert "field is immutable" in str(semantic_error(new, old))


def test_hpa_bounds_and_ingress_paths() -> None:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {}, "spec": {"minReplicas": 3, "maxReplicas": 2}}
    assert "minReplicas" in str(semantic_error(hpa))
    paths = [{"path": "/a//b", "pathType": "Prefix"}, {"path": "/a//b", "pathType": "ImplementationSpecific"}]
    ingress = {"kind": "Ingress", "metadata": {}, "spec": {"rules": [{"http": {"paths": paths}}]}}
    assert str(semantic_error(ingress)).startswith("spec.rules[0].http.paths[0].path: Invalid value")


def test_node_selector_is_applied_whole() -> None:
    """An atomic map: the apply replaces it, and a forced apply takes it from another manager whole."""
    first, entries = apply(
        None,
        deployment(nodeSelector={"a": "1", "b": "2"}),
        [],
        manager="m",
        force=True,
        api_version="apps/v1",
        now="t",
    )
    second, _ = apply(
        first,
        deployment(nodeSelector={"c": "3"}),
        entries,
        manager="m",
        force=True,
        api_version="apps/v1",
        now="t",
    )
    assert second["spec"]["template"]["spec"]["nodeSelector"] == {"c": "3"}
