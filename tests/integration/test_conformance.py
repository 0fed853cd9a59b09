"""Conformance: the same assertions against both API servers, the stand-in and the real control plane.

The real server (kube-apiserver 1.36 with its controllers) is right by definition; each test states what
it does. Where the stand-in (``gco_sandbox/apiserver.py``) agrees, the test simply passes on both.
Where it does not model the behaviour, the ``[standin]`` case is marked ``xfail(strict=True)`` with the
reason: it must fail there (a stand-in that starts to agree turns it into an error, so the list stays
true), and it must pass on the real server.

What the stand-in models (and these tests hold it to): validation of names, label keys and values
(63-character values), selectors that match their template, immutable Deployment selectors, HPA
``minReplicas <= maxReplicas``, tolerations, Ingress paths; strict schemas (unknown fields refused);
server-side apply with ``managedFields`` per manager, atomic ``nodeSelector`` and selectors (an apply
replaces the whole map, taking it from another manager); dropping ``replicas`` from an apply resets it to
the default of 1.

What the stand-in does NOT model (``xfail`` on it, see each test):

- rollout states: no ReplicaSets or pods (the collections are served, always empty, so the fleet's reads
  for an unfinished rollout find nothing); a Deployment's status simply follows its spec after a delay, so
  a rollout to an image that cannot start looks complete (on the real server the old pods keep serving
  and ``updatedReplicas < replicas``), and there is no ``ProgressDeadlineExceeded``;
- the garbage collector: there are no ReplicaSets or pods to collect after a Deployment is deleted;
- the HPA controller: nothing scales a Deployment to an HPA's ``minReplicas``;
- admission: no ServiceAccount check (a Deployment whose pods name a missing ServiceAccount still
  "becomes ready"; on the real server its ReplicaSet cannot create a pod);
- anything else not listed above (defaulting beyond ``replicas`` and a Service's ``type``/``clusterIP``,
  field validation beyond the JSON schemas and the checks listed, watch, RBAC, quotas).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.controlplane import raw
from gco_tasks.adapters.cluster import APPLY_CONTENT_TYPE, FIELD_MANAGER, KINDS, ClusterGateway
from tests.clusters import Cluster

NS = "gco-inference"
LABELS = {"app": "conf", "gco.io/type": "inference"}
TOLERATE_GPU = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


# --------------------------------------------------------------------------------------------------
# Helpers: plain-dict calls through the official client, as the fleet makes them
# --------------------------------------------------------------------------------------------------


def method(cluster: Cluster, kind: str, verb: str) -> Callable[..., Any]:
    api = KINDS[kind]
    found: Callable[..., Any] = getattr(api.api_class(cluster.api_client), f"{verb}_namespaced_{api.suffix}")
    return found


def apply(cluster: Cluster, obj: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
    patch = method(cluster, obj["kind"], "patch")
    name = obj["metadata"]["name"]
    applied: dict[str, Any] = raw(
        patch, name, NS, obj, field_manager=manager, force=True, _content_type=APPLY_CONTENT_TYPE
    )
    return applied


def merge_patch(cluster: Cluster, kind: str, name: str, body: dict[str, Any], manager: str) -> None:
    patch = method(cluster, kind, "patch")
    raw(patch, name, NS, body, field_manager=manager, _content_type="application/merge-patch+json")


def read(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = raw(method(cluster, kind, "read"), name, NS)
    return found


def refused(call: Callable[[], object]) -> dict[str, Any]:
    """The Status body of the 4xx ``call`` must end with."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status is not None and 400 <= caught.value.status < 500, caught.value
    body: dict[str, Any] = json.loads(caught.value.body)
    return body


def differs(request: pytest.FixtureRequest, cluster: Cluster, reason: str) -> None:
    """This behaviour is not modelled by the stand-in: there the test must fail (strict xfail), on one of
    its assertions (an error of another kind, e.g. a refused connection, is not this difference)."""
    if not cluster.real:
        marker = pytest.mark.xfail(
            strict=True, raises=AssertionError, reason=f"stand-in does not model {reason}"
        )
        request.applymarker(marker)


def patience(cluster: Cluster) -> float:
    """How long to wait for a controller: on the stand-in (which has none) a short wait shows it."""
    return 30.0 if cluster.real else 3.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)


def deployment(
    name: str = "conf",
    image: str = "vllm/vllm-openai:v0.6.3",
    replicas: int | None = 1,
    labels: dict[str, str] | None = None,
    selector: dict[str, str] | None = None,
    **pod: Any,
) -> dict[str, Any]:
    labels = labels or {**LABELS, "app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector or {"app": name}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "server", "image": image}], "tolerations": TOLERATE_GPU, **pod},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def hpa(name: str = "conf", low: int = 1, high: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": {**LABELS, "app": name}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
        },
    }


def ingress(path: str) -> dict[str, Any]:
    backend = {"service": {"name": "conf", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "inference-conf", "labels": LABELS},
        "spec": {"rules": [{"http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]}}]},
    }


# --------------------------------------------------------------------------------------------------
# Validation: both servers refuse what Kubernetes refuses
# --------------------------------------------------------------------------------------------------


def test_label_values_longer_than_63_characters_are_invalid(cluster: Cluster) -> None:
    body = refused(lambda: apply(cluster, deployment(labels={**LABELS, "team": "x" * 70})))
    assert body["reason"] == "Invalid" and "must be no more than 63" in body["message"]


def test_label_keys_must_be_qualified_names(cluster: Cluster) -> None:
    body = refused(lambda: apply(cluster, deployment(labels={**LABELS, "bad key!": "x"})))
    assert body["reason"] == "Invalid" and "bad key!" in body["message"]


def test_a_selector_must_match_the_template_labels(cluster: Cluster) -> None:
    body = refused(lambda: apply(cluster, deployment(selector={"app": "other"})))
    assert body["reason"] == "Invalid" and "`selector` does not match template `labels`" in body["message"]


def test_a_deployment_selector_is_immutable(cluster: Cluster) -> None:
    apply(cluster, deployment())
    moved = deployment(labels={**LABELS, "tier": "x"}, selector={"app": "conf", "tier": "x"})
    body = refused(lambda: apply(cluster, moved))
    assert body["reason"] == "Invalid" and "field is immutable" in body["message"]


def test_hpa_min_replicas_above_max_is_invalid(cluster: Cluster) -> None:
    body = refused(lambda: apply(cluster, hpa(low=5, high=2)))
    assert body["reason"] == "Invalid" and "maxReplicas" in body["message"]


@pytest.mark.parametrize(
    ("toleration", "words"),
    [
        (
            {
                "key": "team",
                "operator": "Equal",
                "value": "a",
                "effect": "NoSchedule",
                "tolerationSeconds": 5,
            },
            "NoExecute",
        ),
        ({"key": "bad key!", "operator": "Exists"}, "bad key!"),
        ({"key": "team", "operator": "Equal", "value": "y" * 70}, "must be no more than 63"),
    ],
    ids=["seconds-without-NoExecute", "key", "value"],
)
def test_invalid_tolerations_are_refused(cluster: Cluster, toleration: dict[str, Any], words: str) -> None:
    body = refused(lambda: apply(cluster, deployment(tolerations=[*TOLERATE_GPU, toleration])))
    assert body["reason"] == "Invalid" and words in body["message"]


@pytest.mark.parametrize("path", ["/inference//x", "/inference/./x", "/inference/x/.."])
def test_ingress_prefix_paths_must_be_clean(cluster: Cluster, path: str) -> None:
    body = refused(lambda: apply(cluster, ingress(path)))
    assert body["reason"] == "Invalid" and "path" in body["message"]


def test_an_unknown_field_in_an_apply_is_a_server_error(
    request: pytest.FixtureRequest, cluster: Cluster
) -> None:
    """kube-apiserver 1.36 answers a server-side apply naming an unknown field with 500 (its typed-patch
    error is not a Status); the stand-in refuses it with 422 Invalid instead. The fleet's gateway takes a
    500 for transient and retries it (bounded by TASK_MAX_RETRIES); our rendering never sends one (the
    schema tests and test_server_validation hold that)."""
    differs(request, cluster, "kube-apiserver's 500 on an apply with an unknown field (it answers 422)")
    bad = deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1
    with pytest.raises(ApiException) as caught:
        apply(cluster, bad)
    assert caught.value.status == 500 and "field not declared in schema" in str(caught.value.body)


def test_the_rendered_objects_are_valid(cluster: Cluster) -> None:
    """A rich endpoint's rendered objects are accepted as they are (more in test_server_validation)."""
    from gco_tasks.core.records import Endpoint, parse_spec
    from gco_tasks.core.rendering import RenderOptions, render_endpoint

    spec = parse_spec(
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 20},
            "autoscaling": {"enabled": True, "min_replicas": 1, "max_replicas": 3},
            "capacity_type": "spot",
        }
    )
    for obj in render_endpoint(Endpoint.new("conf", spec, ["us-east-1"]), "us-east-1", RenderOptions()):
        assert apply(cluster, obj)["metadata"]["name"] == obj["metadata"]["name"]


# --------------------------------------------------------------------------------------------------
# Server-side apply
# --------------------------------------------------------------------------------------------------


def test_apply_records_its_manager_in_managed_fields(cluster: Cluster) -> None:
    live = apply(cluster, deployment())
    entries = [e for e in live["metadata"]["managedFields"] if e["manager"] == FIELD_MANAGER]
    assert [(e["operation"], e["apiVersion"], e["fieldsType"]) for e in entries] == [
        ("Apply", "apps/v1", "FieldsV1")
    ]
    fields = entries[0]["fieldsV1"]
    assert "f:replicas" in fields["f:spec"] and "f:template" in fields["f:spec"]


def test_node_selector_is_replaced_whole_by_an_apply(cluster: Cluster) -> None:
    """``nodeSelector`` is an atomic map: an apply sets exactly the map it sends, even over keys that
    another manager added (the forced apply takes the whole map)."""
    apply(cluster, deployment(nodeSelector={"accelerator": "neuron", "team": "a"}))
    apply(cluster, deployment(nodeSelector={"eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"}))
    live = read(cluster, "Deployment", "conf")
    assert live["spec"]["template"]["spec"]["nodeSelector"] == {
        "eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"
    }
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"pool": "g5"}}}}}
    merge_patch(cluster, "Deployment", "conf", patch, manager="kubectl-edit")
    merged = read(cluster, "Deployment", "conf")["spec"]["template"]["spec"]["nodeSelector"]
    assert merged == {
        "eks.amazonaws.com/instance-gpu-manufacturer": "nvidia",
        "pool": "g5",
    }  # a merge patch merges
    apply(cluster, deployment(nodeSelector={"accelerator": "neuron"}))
    live = read(cluster, "Deployment", "conf")
    assert live["spec"]["template"]["spec"]["nodeSelector"] == {"accelerator": "neuron"}


def test_dropping_replicas_from_an_apply_resets_them_to_one(cluster: Cluster) -> None:
    """The handover race of the SSA docs: a manager that owned ``replicas`` and stops sending it removes
    the field, and the API server defaults it to 1 (before any HPA has taken it over)."""
    apply(cluster, deployment(replicas=3))
    apply(cluster, deployment(replicas=None))
    assert read(cluster, "Deployment", "conf")["spec"]["replicas"] == 1


def test_replicas_set_by_another_manager_survive_an_apply_without_them(cluster: Cluster) -> None:
    """Once another writer (an HPA, ``kubectl scale``) has set ``replicas``, an apply that omits the field
    leaves it alone."""
    apply(cluster, deployment(replicas=None))
    merge_patch(cluster, "Deployment", "conf", {"spec": {"replicas": 3}}, manager="kubectl-scale")
    apply(cluster, deployment(replicas=None, image="vllm/vllm-openai:v0.6.4"))
    assert read(cluster, "Deployment", "conf")["spec"]["replicas"] == 3


# --------------------------------------------------------------------------------------------------
# Controllers (the stand-in has none)
# --------------------------------------------------------------------------------------------------


def test_a_rollout_to_an_image_that_cannot_start_never_completes(
    request: pytest.FixtureRequest, cluster: Cluster
) -> None:
    differs(request, cluster, "rollouts (no ReplicaSets or pods; the status follows the spec)")
    apply(cluster, deployment())
    wait_until(
        lambda: (read(cluster, "Deployment", "conf").get("status") or {}).get("readyReplicas") == 1, "ready"
    )
    apply(cluster, deployment(image="vllm/vllm-openai:unpullable"))

    def stuck() -> bool:
        status = read(cluster, "Deployment", "conf").get("status") or {}
        return (status.get("replicas"), status.get("updatedReplicas"), status.get("readyReplicas")) == (
            2,
            1,
            1,
        )

    wait_until(stuck, "two pods: the old one ready, the new one not", patience(cluster))


def test_the_garbage_collector_removes_what_a_deleted_deployment_owned(
    request: pytest.FixtureRequest, cluster: Cluster
) -> None:
    differs(request, cluster, "the garbage collector (no ReplicaSets or pods)")
    apply(cluster, deployment())
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)

    def owned() -> int:
        sets = raw(apps.list_namespaced_replica_set, NS, label_selector="app=conf")["items"]
        pods = raw(core.list_namespaced_pod, NS, label_selector="app=conf")["items"]
        return len(sets) + len(pods)

    wait_until(lambda: owned() == 2, "a ReplicaSet and its pod", patience(cluster))
    raw(apps.delete_namespaced_deployment, "conf", NS, propagation_policy="Background")
    wait_until(lambda: owned() == 0, "the ReplicaSet and pod collected", patience(cluster))


def test_the_hpa_controller_raises_replicas_to_min(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    differs(request, cluster, "the HPA controller")
    apply(cluster, deployment(replicas=None))
    apply(cluster, hpa(low=2, high=4))
    wait_until(
        lambda: read(cluster, "Deployment", "conf")["spec"]["replicas"] == 2,
        "replicas raised to 2",
        patience(cluster),
    )


def test_pods_of_a_missing_service_account_are_never_created(
    request: pytest.FixtureRequest, cluster: Cluster
) -> None:
    differs(request, cluster, "admission (ServiceAccount) or pods")
    apply(cluster, deployment(serviceAccountName="nobody"))

    def replica_failure() -> bool:
        conditions = (read(cluster, "Deployment", "conf").get("status") or {}).get("conditions") or []
        return any(c["type"] == "ReplicaFailure" and c["status"] == "True" for c in conditions)

    wait_until(replica_failure, "the ReplicaFailure condition", patience(cluster))
    assert not (read(cluster, "Deployment", "conf").get("status") or {}).get("readyReplicas")


# --------------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------------


def test_an_apply_body_with_surrogate_escapes_is_refused_and_ours_is_not(cluster: Cluster) -> None:
    """The official client writes a character beyond the BMP (an emoji) as a JSON surrogate pair, which
    is not YAML: kube-apiserver refuses the apply-patch+yaml body (400). The fleet's gateway writes YAML's
    ``\\U`` escape instead (``cluster.apply_body``), and the value arrives intact."""
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "GREETING", "value": "hi 😀"}]
    refusal = refused(lambda: apply(cluster, body))
    assert refusal["code"] == 400 and "invalid Unicode character escape" in refusal["message"]
    ClusterGateway(cluster.api_client, NS).apply(body)  # the fleet's own apply
    env = read(cluster, "Deployment", "conf")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "GREETING", "value": "hi 😀"}]
