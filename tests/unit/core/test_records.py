"""The endpoint model: GCO item round trips, every validation rule, and junk records (hypothesis)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gco_tasks.core.fields import from_dynamo, validate_endpoint_name
from gco_tasks.core.records import (
    Endpoint,
    EndpointSpec,
    InvalidEndpointError,
    RecordHeader,
    RegionStatus,
    parse_spec,
)


def gco_item(**spec: Any) -> dict[str, Any]:
    """An item as GCO's store writes it and boto3's resource layer reads it back (Decimals)."""
    return {
        "endpoint_name": "my-llm",
        "desired_state": "running",
        "target_regions": ["us-east-1", "eu-west-1"],
        "namespace": "gco-inference",
        "spec": {
            "image": "vllm/vllm-openai:v0.6.3",
            "port": Decimal(8000),
            "replicas": Decimal(2),
            "gpu_count": Decimal(1),
            "health_check_path": "/health",
            **spec,
        },
        "ingress_path": "/inference/my-llm",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "region_status": {
            "us-east-1": {
                "state": "running",
                "replicas_ready": Decimal(2),
                "replicas_desired": Decimal(2),
                "last_sync": "2025-01-01T00:00:15+00:00",
            }
        },
    }


FULL_SPEC: dict[str, Any] = {
    "gpu_type": "g5.xlarge",
    "model_path": "llama",
    "model_source": "s3://my-bucket/models/llama-3",
    "env": {"HF_HOME": "/models", "MAX_TOKENS": Decimal(512)},
    "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": Decimal(1)}},
    "command": ["python", "-m", "server"],
    "args": ["--port", "8000"],
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "node_selector": {"karpenter.sh/nodepool": "gpu"},
    "autoscaling": {
        "enabled": True,
        "min_replicas": Decimal(1),
        "max_replicas": Decimal(4),
        "metrics": [{"type": "cpu", "target": Decimal(60)}],
    },
    "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": Decimal(25), "replicas": Decimal(1)},
    "capacity_type": "spot",
    "accelerator": "neuron",
    "region_image_uris": {"eu-west-1": "123.dkr.ecr.eu-west-1.amazonaws.com/vllm:v0.6.3"},
}


def test_reads_gco_item_with_every_field() -> None:
    endpoint = Endpoint.from_item(gco_item(**FULL_SPEC))
    spec = endpoint.spec
    assert (spec.port, spec.replicas, spec.gpu_count) == (8000, 2, 1)
    assert spec.env == {"HF_HOME": "/models", "MAX_TOKENS": "512"}
    assert spec.resources.limits == {"nvidia.com/gpu": "1"}
    assert spec.autoscaling is not None and spec.autoscaling.metrics[0].target == 60
    assert spec.canary is not None and spec.canary.weight == 25
    assert spec.tolerations is not None and spec.tolerations[0].effect == "NoSchedule"
    assert endpoint.region_status["us-east-1"].replicas_ready == 2
    assert spec.image_for_region("eu-west-1").startswith("123.dkr")
    assert spec.image_for_region("us-east-1") == "vllm/vllm-openai:v0.6.3"


def test_round_trip_is_lossless_for_gco_items() -> None:
    item = from_dynamo(gco_item(**FULL_SPEC))
    item["spec"]["env"]["MAX_TOKENS"] = "512"  # env values are strings once read
    item["spec"]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    assert Endpoint.from_item(item).to_item() == item


def test_minimal_gco_spec_stays_minimal() -> None:
    item = from_dynamo(gco_item())
    written = Endpoint.from_item(item).to_item()
    assert written == item
    assert set(written["spec"]) == {"image", "port", "replicas", "gpu_count", "health_check_path"}


def test_unknown_keys_survive_and_floats_are_written_as_strings() -> None:
    item = gco_item(future_knob=Decimal("0.75"), nested={"k": Decimal(3)})
    item["future_top"] = {"a": [Decimal("1.5")]}
    item["region_status"]["us-east-1"]["endpoint_url"] = "https://x"
    written = Endpoint.from_item(item).to_item()
    assert written["spec"]["future_knob"] == "0.75"  # as GCO's _serialize_for_dynamo writes floats
    assert written["spec"]["nested"] == {"k": 3}
    assert written["future_top"] == {"a": ["1.5"]}
    assert written["region_status"]["us-east-1"]["endpoint_url"] == "https://x"


def test_numbers_stored_as_strings_or_whole_floats_are_read() -> None:
    spec = parse_spec({"image": "i", "replicas": "3", "port": 8080.0, "gpu_count": Decimal("2")})
    assert (spec.replicas, spec.port, spec.gpu_count) == (3, 8080, 2)
    with pytest.raises(InvalidEndpointError, match=r"spec\.replicas"):
        parse_spec({"image": "i", "replicas": "2.5"})
    with pytest.raises(InvalidEndpointError, match=r"spec\.replicas"):
        parse_spec({"image": "i", "replicas": True})


def test_defaults_match_gco() -> None:
    spec = EndpointSpec(image="i")
    assert (spec.port, spec.replicas, spec.gpu_count, spec.health_check_path) == (8000, 1, 1, "/health")
    assert spec.accelerator == "nvidia" and spec.capacity_type is None and spec.canary is None
    endpoint = Endpoint.from_item({"endpoint_name": "a", "spec": {"image": "i"}})
    assert endpoint.desired_state == "deploying" and endpoint.ingress_path == "/inference/a"
    assert endpoint.namespace == "gco-inference"
    assert parse_spec({"image": "i", "canary": {"image": "c"}}).canary.weight == 10  # type: ignore[union-attr]
    autoscaling = parse_spec({"image": "i", "autoscaling": {"enabled": True}}).autoscaling
    assert (
        autoscaling is not None
        and autoscaling.metrics[0].type == "cpu"
        and autoscaling.metrics[0].target == 70
    )


def test_new_record_has_gco_keys_only() -> None:
    endpoint = Endpoint.new("demo", EndpointSpec(image="i"), ["us-east-1"])
    assert set(endpoint.to_item()) == {
        "endpoint_name", "desired_state", "target_regions", "namespace", "spec",
        "ingress_path", "created_at", "updated_at", "region_status",
    }  # fmt: skip
    labelled = Endpoint.new("demo", EndpointSpec(image="i"), ["r"], labels={"a": "b"}, created_by="me")
    assert labelled.to_item()["labels"] == {"a": "b"} and labelled.to_item()["created_by"] == "me"


@pytest.mark.parametrize(
    "name",
    ["a", "my-llm", "a1", "x" * 53, "llama-3-70b"],
)
def test_valid_names(name: str) -> None:
    assert validate_endpoint_name(name) == name


@pytest.mark.parametrize("name", ["", "Bad_Name", "1abc", "-a", "a-", "a.b", "x" * 54, "UPPER", "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError):
        validate_endpoint_name(name)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"image": ""}, "spec.image"),
        ({"image": "a b"}, "spec.image"),
        ({"replicas": -1}, "spec.replicas"),
        ({"gpu_count": -1}, "spec.gpu_count"),
        ({"gpu_count": 1.5}, "spec.gpu_count"),
        ({"port": 0}, "spec.port"),
        ({"port": 65536}, "spec.port"),
        ({"accelerator": "amd"}, "spec.accelerator"),
        ({"canary": {"image": "c", "weight": 0}}, "spec.canary.weight"),
        ({"canary": {"image": "c", "weight": 100}}, "spec.canary.weight"),
        ({"canary": {"weight": 10}}, "spec.canary.image"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "spec.autoscaling"),
        ({"autoscaling": {"metrics": [{"type": "gpu", "target": 50}]}}, "spec.autoscaling.metrics[0].type"),
        (
            {"autoscaling": {"metrics": [{"type": "cpu", "target": 101}]}},
            "spec.autoscaling.metrics[0].target",
        ),
        ({"env": {"1X": "a"}}, "spec.env.1X (key)"),
        ({"env": {"A-B": "a"}}, "spec.env.A-B (key)"),
        ({"health_check_path": "health"}, "spec.health_check_path"),
        ({"model_source": "s3://bucket/x;rm -rf /"}, "spec.model_source"),
        ({"model_source": "s3://B/x"}, "spec.model_source"),
        ({"model_source": "not a model id"}, "spec.model_source"),
        ({"node_selector": {"a/b/c": "x"}}, "spec.node_selector.a/b/c (key)"),
        ({"node_selector": {"ok": "x" * 64}}, "spec.node_selector.ok"),
        ({"capacity_type": "mixed"}, "spec.capacity_type"),
        ({"resources": {"limits": {"cpu": "lots"}}}, "spec.resources.limits.cpu"),
        ({"tolerations": [{"key": "k", "operator": "Sometimes"}]}, "spec.tolerations[0].operator"),
        # Found by applying generated records to the real API server (test_server_validation.py):
        ({"tolerations": [{"key": "/", "operator": "Equal"}]}, "spec.tolerations[0].key"),
        ({"tolerations": [{"key": "a b", "operator": "Exists"}]}, "spec.tolerations[0].key"),
        ({"tolerations": [{"key": "k", "value": "v" * 64}]}, "spec.tolerations[0].value"),
        ({"tolerations": [{"key": "k", "value": "no spaces"}]}, "spec.tolerations[0].value"),
        (
            {
                "tolerations": [
                    {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}
                ]
            },
            "spec.tolerations[0].tolerationSeconds",
        ),
        (
            {"tolerations": [{"operator": "Exists", "tolerationSeconds": 5}]},
            "spec.tolerations[0].tolerationSeconds",
        ),
        ({"region_image_uris": {"eu-west-1": ""}}, "spec.region_image_uris.eu-west-1"),
    ],
)
def test_each_rule_names_its_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidEndpointError) as info:
        parse_spec({"image": "img:1", **spec})
    assert field in [path for path, _ in info.value.problems]
    assert field in str(info.value)


@pytest.mark.parametrize("source", ["s3://my-bucket/models/llama-3/", "meta-llama/Llama-3.1-8B", "gpt2"])
def test_valid_model_sources(source: str) -> None:
    assert parse_spec({"image": "i", "model_source": source}).model_source == source


def test_tolerations_kubernetes_accepts_are_accepted() -> None:
    tolerations = [
        {"operator": "Exists"},
        {"key": "", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "team", "value": "ml", "effect": ""},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ]
    assert len(parse_spec({"image": "i", "tolerations": tolerations}).tolerations or []) == 5


@pytest.mark.parametrize(
    "path",
    [
        "/inference/a//b",
        "/inference/a/./b",
        "/inference/a/../b",
        "/inference/a%2fb",
        "/inference/a%2Fb",
        "/inference/a/..",
        "/inference/a/.",
        "inference/a/b",
    ],
)
def test_ingress_paths_kubernetes_refuses_are_refused(path: str) -> None:
    """Also found through the real API server: an Ingress path of type Prefix may not hold these."""
    item = {"endpoint_name": "x", "spec": {"image": "i"}, "ingress_path": path}
    with pytest.raises(InvalidEndpointError) as info:
        Endpoint.from_item(item)
    assert [p for p, _ in info.value.problems] == ["ingress_path"]
    accepted = "/inference/team-a/x.v2/"
    assert Endpoint.from_item({**item, "ingress_path": accepted}).ingress_path == accepted


def test_every_problem_is_reported_at_once() -> None:
    item = {"endpoint_name": "Bad_Name", "desired_state": "paused", "labels": {"k": "v v"},
            "spec": {"image": "", "replicas": -1}}  # fmt: skip
    with pytest.raises(InvalidEndpointError) as info:
        Endpoint.from_item(item)
    paths = {path for path, _ in info.value.problems}
    assert paths == {"endpoint_name", "desired_state", "labels.k", "spec.image", "spec.replicas"}
    assert isinstance(info.value, ValueError)


def test_with_changes_validates_and_removes() -> None:
    spec = parse_spec({"image": "i", "canary": {"image": "c"}, "extra": 1})
    assert spec.with_changes(canary=None).canary is None
    assert spec.with_changes(canary=None).model_extra == {"extra": 1}
    with pytest.raises(InvalidEndpointError, match=r"spec\.replicas"):
        spec.with_changes(replicas=-5)


def test_region_status_comparison_and_time() -> None:
    a = RegionStatus(state="running", replicas_ready=1, replicas_desired=1, last_sync="2025-01-01T00:00:00")
    assert a.same_report(a.model_copy(update={"last_sync": None}))
    assert not a.same_report(a.model_copy(update={"error": "x"}))
    assert a.last_sync_at() is not None and a.last_sync_at().tzinfo is not None  # type: ignore[union-attr]
    assert RegionStatus(state="error", last_sync="junk").last_sync_at() is None
    assert RegionStatus(state="error").to_dict() == {
        "state": "error",
        "replicas_ready": 0,
        "replicas_desired": 0,
    }


def test_record_header_reads_what_it_can() -> None:
    header = RecordHeader.from_item(
        {
            "endpoint_name": "Bad_Name",
            "desired_state": 5,
            "target_regions": ["r1", 7],
            "region_status": "junk",
        }
    )
    assert header.endpoint_name == "Bad_Name" and header.desired_state is None
    assert header.target_regions == ["r1"] and header.region_status == {} and header.targets("r1")
    with pytest.raises(InvalidEndpointError):
        RecordHeader.from_item({"endpoint_name": 5})


# ---- property tests: junk in, a model or InvalidEndpointError out ---------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["", "a", "/x", "nvidia", "cpu", "spot", "Exists", "s3://b/k", "deploying", "running", "1"]
    )
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["image", "port", "replicas", "gpu_count", "env", "resources", "tolerations", "node_selector",
          "autoscaling", "canary", "capacity_type", "accelerator", "region_image_uris", "model_source",
          "health_check_path", "command", "args"]  # fmt: skip
spec_like = st.dictionaries(st.sampled_from(FIELDS), junk, max_size=8)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "endpoint_name": st.sampled_from(["demo", "Bad_Name", ""]) | junk,
        "desired_state": junk,
        "target_regions": junk,
        "namespace": junk,
        "spec": spec_like | junk,
        "ingress_path": junk,
        "region_status": st.dictionaries(st.text(max_size=5), junk, max_size=3) | junk,
        "labels": junk,
        "created_by": junk,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_like | junk)
def test_junk_records_give_a_model_or_invalid_endpoint_error(item: Any) -> None:
    try:
        endpoint = Endpoint.from_item(item)
    except InvalidEndpointError as exc:
        assert exc.problems and all(isinstance(p, str) and isinstance(m, str) for p, m in exc.problems)
        str(exc)
    else:
        assert Endpoint.from_item(endpoint.to_item()) == endpoint  # what we write, we read back
    if isinstance(item, dict) and isinstance(item.get("endpoint_name"), str):
        assert RecordHeader.from_item(item).endpoint_name == item["endpoint_name"]


@settings(max_examples=300, deadline=None)
@given(spec_like)
def test_junk_specs_give_a_spec_or_invalid_endpoint_error(data: dict[str, Any]) -> None:
    try:
        spec = parse_spec({"image": "img:1", **data})
    except InvalidEndpointError as exc:
        assert all(path.startswith("spec") for path, _ in exc.problems)
    else:
        assert parse_spec(spec.to_dict()) == spec


@pytest.mark.parametrize("name", ["x" * 1025, "not a name", "/gpu", "a" * 64])
def test_resource_names_must_be_qualified_names(name: str) -> None:
    """A resource name is a qualified name; an unbounded map key could not even be sent in an apply body
    (YAML refuses implicit keys over 1024 characters), so it is refused here, naming the field."""
    with pytest.raises(InvalidEndpointError) as info:
        parse_spec({"image": "i", "resources": {"requests": {name: "1"}}})
    assert [path for path, _ in info.value.problems] == [f"spec.resources.requests.{name} (key)"]
    assert parse_spec({"image": "i", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
