"""The region's policy on records (``rendering.policy``): caps on replicas, GPUs per pod and cpu/memory
per container, and tolerations that name a key. Pure checks, and what rendering makes of them: an
``InvalidEndpointError`` naming the field, the cap and the setting (the reconciler reports it as the
region's ``error`` and applies nothing; ``test_policy_fleet.py`` shows that through the fleet)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from gco_tasks.core.config import ConfigError, load_settings
from gco_tasks.core.records import Endpoint, EndpointSpec, InvalidEndpointError, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.rendering.policy import (
    DEFAULT_MAX_CPU,
    DEFAULT_MAX_GPUS,
    DEFAULT_MAX_MEMORY,
    DEFAULT_MAX_REPLICAS,
    EndpointPolicy,
    policy_problems,
)

REGION = "us-east-1"
POLICY = EndpointPolicy(
    max_replicas_per_endpoint=4,
    max_gpus_per_pod=2,
    max_cpu_per_container="8",
    max_memory_per_container="64Gi",
    allowed_toleration_keys=("team",),
)
Obj = dict[str, Any]


def spec(**fields: Any) -> EndpointSpec:
    return parse_spec({"image": "vllm/vllm-openai:v0.6.3", **fields})


def problems(policy: EndpointPolicy = POLICY, **fields: Any) -> dict[str, str]:
    return dict(policy_problems(spec(**fields), "demo", policy))


def test_a_record_within_every_cap_has_no_problem() -> None:
    assert problems() == {}
    at_caps = {
        "replicas": 4,
        "gpu_count": 2,
        "autoscaling": {"enabled": True, "min_replicas": 1, "max_replicas": 4},
        "canary": {"image": "vllm/vllm-openai:v0.7.0", "replicas": 4},
        "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"cpu": "8", "memory": "64Gi"}},
        "tolerations": [{"key": "team", "operator": "Exists"}],
    }
    assert problems(**at_caps) == {}


@pytest.mark.parametrize(
    "fields, path",
    [
        ({"replicas": 5}, "spec.replicas"),
        ({"autoscaling": {"enabled": True, "max_replicas": 5}}, "spec.autoscaling.max_replicas"),
        ({"autoscaling": {"enabled": False, "max_replicas": 5}}, "spec.autoscaling.max_replicas"),
        ({"canary": {"image": "vllm/vllm-openai:v0.7.0", "replicas": 5}}, "spec.canary.replicas"),
    ],
)
def test_replicas_over_the_cap_name_the_field_the_cap_and_the_setting(fields: Obj, path: str) -> None:
    found = problems(**fields)
    assert list(found) == [path]
    assert found[path] == (
        "5 is above this region's cap of 4 replicas (MAX_REPLICAS_PER_ENDPOINT); ask for at most 4, "
        "or have the operator raise MAX_REPLICAS_PER_ENDPOINT"
    )


def test_gpus_over_the_cap_in_gpu_count_or_named_in_resources() -> None:
    assert problems(gpu_count=3) == {
        "spec.gpu_count": "3 is above this region's cap of 2 devices per pod (MAX_GPUS_PER_POD); ask for at "
        "most 2, or have the operator raise MAX_GPUS_PER_POD"
    }
    assert list(problems(gpu_count=3, accelerator="neuron")) == ["spec.gpu_count"]
    sneaked = problems(gpu_count=0, resources={"limits": {"nvidia.com/gpu": "8"}})
    assert list(sneaked) == ["spec.resources.limits.nvidia.com/gpu"], "gpu_count 0 cannot hide devices"
    other = problems(gpu_count=1, resources={"requests": {"aws.amazon.com/neuron": "4"}})
    assert set(other) == {
        "spec.resources.requests.aws.amazon.com/neuron",
        "spec.resources.limits.aws.amazon.com/neuron",  # an extended resource is limited at its request
    }


def test_cpu_and_memory_over_the_cap_name_what_the_record_gave() -> None:
    found = problems(resources={"requests": {"cpu": "12"}, "limits": {"memory": "65Gi"}})
    assert set(found) == {"spec.resources.requests.cpu", "spec.resources.limits.memory"}
    assert (
        "12 is above this region's cap of 8 per container (MAX_CPU_PER_CONTAINER)"
        in found["spec.resources.requests.cpu"]
    )
    assert "(MAX_MEMORY_PER_CONTAINER)" in found["spec.resources.limits.memory"]
    assert problems(resources={"limits": {"cpu": "8000m"}}) == {}, "quantities compare by value"


def test_a_cap_below_gcos_defaults_names_the_default() -> None:
    found = problems(replace(POLICY, max_cpu_per_container="2"))
    assert list(found) == ["spec.resources.limits.cpu"]
    assert found["spec.resources.limits.cpu"].startswith("4 (the default when the record sets none) is above")


def test_a_keyless_toleration_is_refused_unless_the_operator_allows_it() -> None:
    tolerations = [{"key": "team", "operator": "Exists"}, {"operator": "Exists", "effect": "NoSchedule"}]
    found = problems(tolerations=tolerations)
    assert found == {
        "spec.tolerations[1]": "has no key, so it tolerates every taint (control-plane and other dedicated "
        "nodes too); name the taint's key, or have the operator set ALLOW_WILDCARD_TOLERATIONS=true"
    }
    assert problems(replace(POLICY, allow_wildcard_tolerations=True), tolerations=tolerations) == {}
    assert list(problems(tolerations=[{"key": "", "operator": "Exists"}])) == ["spec.tolerations[0]"]


# ----------------------------------------------------------------------------- at render time


def record(**fields: Any) -> Endpoint:
    item = {"endpoint_name": "demo", "target_regions": [REGION], "spec": {"image": "vllm/x:1", **fields}}
    return Endpoint.from_item(item)


def test_rendering_refuses_every_problem_at_once() -> None:
    over = record(replicas=5, gpu_count=3, tolerations=[{"operator": "Exists"}])
    with pytest.raises(InvalidEndpointError) as caught:
        render_endpoint(over, REGION, RenderOptions(policy=POLICY))
    assert [path for path, _ in caught.value.problems] == [
        "spec.replicas",
        "spec.tolerations[0]",
        "spec.gpu_count",
    ]
    assert str(caught.value).startswith("invalid endpoint 'demo': spec.replicas: 5 is above")


def test_stopped_records_are_checked_and_deleted_or_elsewhere_ones_are_not() -> None:
    """A stopped record over a cap is an error too (starting it is one field away); a deleted one, or
    one that does not target the region, renders nothing, so its objects can still go."""
    item = {"endpoint_name": "demo", "target_regions": [REGION], "spec": {"image": "vllm/x:1", "replicas": 9}}
    with pytest.raises(InvalidEndpointError):
        render_endpoint(
            Endpoint.from_item({**item, "desired_state": "stopped"}), REGION, RenderOptions(policy=POLICY)
        )
    assert (
        render_endpoint(
            Endpoint.from_item({**item, "desired_state": "deleted"}), REGION, RenderOptions(policy=POLICY)
        )
        == []
    )
    assert render_endpoint(Endpoint.from_item(item), "eu-west-1", RenderOptions(policy=POLICY)) == []


# ----------------------------------------------------------------------------- the settings


def test_defaults_fit_gcos_default_endpoint_and_the_namespace_limit_range() -> None:
    assert RenderOptions.from_settings(load_settings({})).policy == EndpointPolicy()
    assert (DEFAULT_MAX_REPLICAS, DEFAULT_MAX_GPUS, DEFAULT_MAX_CPU, DEFAULT_MAX_MEMORY) == (
        32,
        16,
        "96",
        "1Ti",
    )
    assert problems(EndpointPolicy()) == {}


def test_settings_build_the_policy() -> None:
    environ = {
        "MAX_REPLICAS_PER_ENDPOINT": "4",
        "MAX_GPUS_PER_POD": "2",
        "MAX_CPU_PER_CONTAINER": "8",
        "MAX_MEMORY_PER_CONTAINER": "64Gi",
        "ALLOW_WILDCARD_TOLERATIONS": "true",
        "ALLOWED_TOLERATION_KEYS": "team",
    }
    policy = RenderOptions.from_settings(load_settings(environ)).policy
    assert policy == replace(POLICY, allow_wildcard_tolerations=True)


@pytest.mark.parametrize(
    "variable, value, words",
    [
        (
            "MAX_REPLICAS_PER_ENDPOINT",
            "0",
            "MAX_REPLICAS_PER_ENDPOINT: Input should be greater than or equal to 1",
        ),
        ("MAX_GPUS_PER_POD", "many", "MAX_GPUS_PER_POD"),
        ("MAX_CPU_PER_CONTAINER", "lots", "MAX_CPU_PER_CONTAINER: must be a Kubernetes quantity"),
        ("MAX_MEMORY_PER_CONTAINER", "-1Gi", "MAX_MEMORY_PER_CONTAINER: must be above 0"),
        ("ALLOW_WILDCARD_TOLERATIONS", "maybe", "ALLOW_WILDCARD_TOLERATIONS"),
        ("INFERENCE_POD_LOCKDOWN", "sometimes", "INFERENCE_POD_LOCKDOWN"),
    ],
)
def test_bad_settings_stop_the_process_naming_the_variable(variable: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings({variable: value})


# --------------------------------------------------------------------------- per endpoint (finding 6)


def test_one_record_cannot_take_the_regions_whole_gpu_quota() -> None:
    """Issue 22, finding 6: 32 replicas x 16 GPUs passed every per-pod cap on main while the example
    quota holds 64 GPUs. The endpoint's total (replicas x per pod) is capped: MAX_GPUS_PER_ENDPOINT."""
    found = dict(policy_problems(spec(replicas=32, gpu_count=16), "demo", EndpointPolicy()))
    assert list(found) == ["spec.replicas"]
    assert "32 replicas (spec.replicas) x 16" in found["spec.replicas"]
    assert "= 512" in found["spec.replicas"] and "MAX_GPUS_PER_ENDPOINT" in found["spec.replicas"]
    item = {
        "endpoint_name": "demo",
        "target_regions": [REGION],
        "spec": {"image": "x", "replicas": 32, "gpu_count": 16},
    }
    with pytest.raises(InvalidEndpointError, match="MAX_GPUS_PER_ENDPOINT"):
        render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())
    assert policy_problems(spec(replicas=4, gpu_count=8), "demo", EndpointPolicy()) == []  # 32: at the cap


def test_the_total_counts_the_most_replicas_and_the_canary() -> None:
    """Autoscaling's maximum (even while off: it is one field away) and the canary's pods count."""
    policy = EndpointPolicy(max_gpus_per_endpoint=16)
    scaled = {"autoscaling": {"enabled": False, "min_replicas": 1, "max_replicas": 3}}
    found = dict(policy_problems(spec(replicas=1, gpu_count=8, **scaled), "demo", policy))
    assert (
        list(found) == ["spec.autoscaling.max_replicas"] and "= 24" in found["spec.autoscaling.max_replicas"]
    )
    canary = {"canary": {"image": "vllm/vllm-openai:v0.7.0", "replicas": 1}}
    found = dict(policy_problems(spec(replicas=2, gpu_count=8, **canary), "demo", policy))
    assert "2 replicas (spec.replicas) + 1 canary replicas x 8" in found["spec.replicas"]
    neuron = spec(replicas=3, gpu_count=0, resources={"requests": {"aws.amazon.com/neuron": "8"}})
    assert "MAX_GPUS_PER_ENDPOINT" in dict(policy_problems(neuron, "demo", policy))["spec.replicas"]


def test_one_record_cannot_take_the_regions_whole_cpu_quota() -> None:
    """Finding 6, cpu: per pod the larger of request and limit (the quota counts both), times the pods."""
    policy = EndpointPolicy(max_cpu_per_endpoint="64")
    within = spec(replicas=8, gpu_count=0, resources={"requests": {"cpu": "4"}, "limits": {"cpu": "8"}})
    assert policy_problems(within, "demo", policy) == []
    over = spec(replicas=9, gpu_count=0, resources={"requests": {"cpu": "4"}, "limits": {"cpu": "8"}})
    message = dict(policy_problems(over, "demo", policy))["spec.replicas"]
    assert "9 replicas (spec.replicas) x 8 cpu per pod = 72" in message and "MAX_CPU_PER_ENDPOINT" in message
    half = spec(replicas=3, gpu_count=0, resources={"requests": {"cpu": "500m"}})
    assert policy_problems(half, "demo", EndpointPolicy(max_cpu_per_endpoint="1")) != []


def test_per_endpoint_caps_come_from_the_settings() -> None:
    settings = load_settings({"MAX_GPUS_PER_ENDPOINT": "8", "MAX_CPU_PER_ENDPOINT": "500m"})
    policy = RenderOptions.from_settings(settings).policy
    assert (policy.max_gpus_per_endpoint, policy.max_cpu_per_endpoint) == (8, "500m")
    with pytest.raises(ConfigError, match="MAX_CPU_PER_ENDPOINT: must be a Kubernetes quantity"):
        load_settings({"MAX_CPU_PER_ENDPOINT": "lots"})
    with pytest.raises(ConfigError, match="MAX_GPUS_PER_ENDPOINT"):
        load_settings({"MAX_GPUS_PER_ENDPOINT": "0"})


def test_default_per_endpoint_caps_leave_the_example_quota_to_more_than_one_record() -> None:
    """The sizing rule docs/security.md gives: a per-endpoint cap below the namespace's ResourceQuota."""
    quota = yaml.safe_load(
        (Path(__file__).parents[4] / "k8s/inference-namespace/resourcequota.yaml").read_text()
    )
    hard = quota["spec"]["hard"]
    policy = EndpointPolicy()
    assert 2 * policy.max_gpus_per_endpoint <= int(hard["requests.nvidia.com/gpu"])
    assert 2 * int(policy.max_cpu_per_endpoint) <= int(hard["requests.cpu"])


# --------------------------------------------------------------------------- taint keys (finding 5)


@pytest.mark.parametrize(
    "key",
    [
        "node-role.kubernetes.io/control-plane",
        "CriticalAddonsOnly",
        "dedicated",
        "node.kubernetes.io/unschedulable",
    ],
)
def test_a_record_may_tolerate_only_the_allowed_taint_keys(key: str) -> None:
    """Issue 22, finding 5: a record could tolerate any keyed taint (the control plane's, system add-ons',
    another team's dedicated nodes). By default only the accelerators' and the node conditions' keys are
    allowed; anything else reads error naming the toleration's key and ALLOWED_TOLERATION_KEYS."""
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"key": key, "operator": "Exists"}]
    found = dict(policy_problems(spec(tolerations=tolerations), "demo", EndpointPolicy()))
    assert list(found) == ["spec.tolerations[1].key"]
    assert (
        repr(key) in found["spec.tolerations[1].key"]
        and "ALLOWED_TOLERATION_KEYS" in found["spec.tolerations[1].key"]
    )
    item = {
        "endpoint_name": "demo",
        "target_regions": [REGION],
        "spec": {"image": "x", "tolerations": tolerations},
    }
    with pytest.raises(InvalidEndpointError, match="ALLOWED_TOLERATION_KEYS"):
        render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())


def test_the_default_keys_render_and_the_operator_may_widen_them() -> None:
    allowed = [
        {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ]
    assert policy_problems(spec(tolerations=allowed), "demo", EndpointPolicy()) == []
    team = [{"key": "example.com/team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    settings = load_settings({"ALLOWED_TOLERATION_KEYS": "nvidia.com/gpu, example.com/team"})
    policy = RenderOptions.from_settings(settings).policy
    assert policy.allowed_toleration_keys == ("nvidia.com/gpu", "example.com/team")
    assert policy_problems(spec(tolerations=team), "demo", policy) == []
    anything = RenderOptions.from_settings(load_settings({"ALLOWED_TOLERATION_KEYS": "*"})).policy
    assert (
        policy_problems(spec(tolerations=[{"key": "dedicated", "operator": "Exists"}]), "demo", anything)
        == []
    )
    keyless = [{"operator": "Exists"}]  # '*' is any key, not every taint: that is ALLOW_WILDCARD_TOLERATIONS
    assert list(dict(policy_problems(spec(tolerations=keyless), "demo", anything))) == ["spec.tolerations[0]"]
    with pytest.raises(ConfigError, match="ALLOWED_TOLERATION_KEYS"):
        load_settings({"ALLOWED_TOLERATION_KEYS": "bad key!"})
