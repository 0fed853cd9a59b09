"""Inference pods locked down by default (``rendering.lockdown``), GCO's pod template with
``INFERENCE_POD_LOCKDOWN=false``, and the record's opt-in to non-root (``spec.run_as_non_root``,
``spec.run_as_user``). Whether Kubernetes' Pod Security admission agrees is shown on the real API server
(``tests/integration/test_pod_security_real.py``)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, InvalidEndpointError, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.rendering.lockdown import MODEL_SYNC_UID

REGION = "us-east-1"
Obj = dict[str, Any]
LOCKDOWN_KEYS = {"automountServiceAccountToken", "securityContext"}
UNPRIVILEGED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
S3 = "s3://bucket-1/models/llama/"


def endpoint(**spec: Any) -> Endpoint:
    item = {
        "endpoint_name": "demo",
        "desired_state": "running",
        "target_regions": [REGION],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", **spec},
    }
    return Endpoint.from_item(item)


def deployments(ep: Endpoint, lockdown: bool = True) -> list[Obj]:
    objects = render_endpoint(ep, REGION, RenderOptions(pod_lockdown=lockdown))
    return [obj for obj in objects if obj["kind"] == "Deployment"]


def pod_of(ep: Endpoint, lockdown: bool = True) -> Obj:
    pod: Obj = deployments(ep, lockdown)[0]["spec"]["template"]["spec"]
    return pod


def containers(pod: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def without_lockdown(deployment: Obj) -> Obj:
    """The Deployment with every lockdown field taken out (and its hash annotation)."""
    stripped = copy.deepcopy(deployment)
    del stripped["metadata"]["annotations"]
    pod = stripped["spec"]["template"]["spec"]
    for key in LOCKDOWN_KEYS:
        pod.pop(key, None)
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        container.pop("securityContext", None)
        if container["name"] == "model-sync":
            container.pop("env", None)
    return stripped


# ----------------------------------------------------------------------------- the default


def test_default_pod_has_no_token_no_privilege_no_capabilities_and_runtime_default_seccomp() -> None:
    pod = pod_of(endpoint(model_source=S3))
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    found = containers(pod)
    assert sorted(found) == ["inference", "model-sync"]
    assert found["inference"]["securityContext"] == UNPRIVILEGED, "root stays allowed: not opted in"


def test_model_sync_runs_as_non_root_with_a_writable_home() -> None:
    sync = containers(pod_of(endpoint(model_source=S3)))["model-sync"]
    assert sync["securityContext"] == {
        **UNPRIVILEGED,
        "runAsNonRoot": True,
        "runAsUser": MODEL_SYNC_UID,
        "runAsGroup": MODEL_SYNC_UID,
    }
    assert MODEL_SYNC_UID != 0
    assert sync["env"] == [{"name": "HOME", "value": "/tmp"}], "aws-cli writes $HOME/.aws"
    assert sync["command"][:3] == ["aws", "s3", "sync"]


def test_canary_pods_are_locked_down_the_same_way() -> None:
    ep = endpoint(canary={"image": "vllm/vllm-openai:v0.7.0", "weight": 20}, run_as_non_root=True)
    primary, canary = (d["spec"]["template"]["spec"] for d in deployments(ep))
    assert canary["securityContext"] == primary["securityContext"]
    assert canary["securityContext"]["runAsNonRoot"] is True
    assert canary["automountServiceAccountToken"] is False
    assert containers(canary)["inference"]["securityContext"] == UNPRIVILEGED


# ----------------------------------------------------------------------------- the record's opt-in


def test_opting_in_to_non_root_sets_it_on_the_pod() -> None:
    pod = pod_of(endpoint(run_as_non_root=True))
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    pod = pod_of(endpoint(run_as_non_root=True, run_as_user=1000, model_source=S3))
    assert pod["securityContext"]["runAsUser"] == 1000
    sync = containers(pod)["model-sync"]["securityContext"]
    assert sync["runAsUser"] == MODEL_SYNC_UID, "the init container keeps its own user"


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"run_as_user": 1000}, "spec.run_as_user"),
        ({"run_as_non_root": False, "run_as_user": 1000}, "spec.run_as_user"),
        ({"run_as_non_root": True, "run_as_user": 0}, "spec.run_as_user"),
        ({"run_as_non_root": True, "run_as_user": 2**31}, "spec.run_as_user"),
        ({"run_as_non_root": "yes"}, "spec.run_as_non_root"),
    ],
)
def test_non_root_fields_are_validated(spec: Obj, field: str) -> None:
    with pytest.raises(InvalidEndpointError) as caught:
        endpoint(**spec)
    assert [path for path, _ in caught.value.problems] == [field]


def test_non_root_fields_round_trip_and_are_written_only_when_set() -> None:
    opted = endpoint(run_as_non_root=True, run_as_user=1000)
    spec = opted.to_item()["spec"]
    assert (spec["run_as_non_root"], spec["run_as_user"]) == (True, 1000)
    assert Endpoint.from_item(opted.to_item()) == opted
    assert not {"run_as_non_root", "run_as_user"} & set(endpoint().to_item()["spec"])
    assert parse_spec({"image": "x", "run_as_non_root": False}).non_root is False


# ----------------------------------------------------------------------------- INFERENCE_POD_LOCKDOWN


def test_lockdown_off_renders_gcos_pod_template_and_nothing_else_changes() -> None:
    """Off: none of the fields anywhere in the template (a cut-over from GCO restarts no pod for them);
    apart from them the Deployments are identical, and the hash differs, so switching it on later rolls
    each endpoint's pods exactly once."""
    ep = endpoint(model_source=S3, canary={"image": "vllm/vllm-openai:v0.7.0"})
    plain, locked = deployments(ep, lockdown=False), deployments(ep, lockdown=True)
    for deployment in plain:
        pod = deployment["spec"]["template"]["spec"]
        assert not LOCKDOWN_KEYS & set(pod)
        assert all("securityContext" not in c and "env" not in c for c in containers(pod).values())
    assert [without_lockdown(d) for d in plain] == [without_lockdown(d) for d in locked]
    hashes = [d["metadata"]["annotations"]["gco.io/desired-hash"] for d in (*plain, *locked)]
    assert len(set(hashes)) == 4


def test_lockdown_off_still_honours_a_record_that_opts_in_to_non_root() -> None:
    """``restricted`` needs every field, so the record's opt-in brings them all whatever the setting."""
    assert pod_of(endpoint(run_as_non_root=True), lockdown=False) == pod_of(endpoint(run_as_non_root=True))


def test_the_setting_reaches_the_render_options() -> None:
    assert RenderOptions.from_settings(load_settings({})).pod_lockdown is True
    off = load_settings({"INFERENCE_POD_LOCKDOWN": "false"})
    assert RenderOptions.from_settings(off).pod_lockdown is False
