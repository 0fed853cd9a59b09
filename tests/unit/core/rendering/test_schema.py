"""Every rendered object is valid Kubernetes: kubernetes-validate (strict) for 1.30 and 1.33, plus the
checks the JSON schemas cannot express (name and label formats, selectors that select the right pods,
references between objects).

Two corpora: every combination of the features that change which objects exist (state x canary x
autoscaling x accelerator x model storage), with the other options cycled through them; and
hypothesis-generated records, built through the model. For any record the model accepts, rendering must
give valid objects; for anything else the model must refuse it with an error naming the field.

Speed: kubernetes-validate re-reads its schema files on every call; the fixture below caches that read
(the validation itself is the library's), and identical objects are validated once.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as quantity_value

from gco_tasks.core.conventions import (
    ENDPOINT_LABEL,
    HASH_ANNOTATION,
    WEIGHTED_ROUTING_ANNOTATION,
)
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import (
    RenderOptions,
    content_hash,
    object_key,
    render_endpoint,
)
from gco_tasks.core.rendering.policy import EndpointPolicy

VERSIONS = ("1.30.0", "1.33.0")
REGION = "us-east-1"
#: These tests are about valid Kubernetes, not about a region's caps (``test_policy.py``): no cap binds.
UNCAPPED = EndpointPolicy(
    2**31 - 1,
    2**31 - 1,
    "1e9",
    "1e18",
    allow_wildcard_tolerations=True,
    allowed_toleration_keys=("*",),
    max_gpus_per_endpoint=2**62,
    max_cpu_per_endpoint="1e30",
)
OPTIONS = RenderOptions(policy=UNCAPPED)
Obj = dict[str, Any]

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        cached = functools.cache(kubernetes_validate.utils.schema_contents)
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


# ----------------------------------------------------------------------------- checks


def assert_valid(objects: list[Obj], seen: set[str] | None = None) -> None:
    """Schema-valid for every version (each distinct object once), and semantically sound as a set."""
    for obj in objects:
        digest = content_hash(obj)
        if seen is not None and digest in seen:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{object_key(obj)} invalid for {version}: {exc.message}")
        if seen is not None:
            seen.add(digest)
    check_semantics(objects)


def check_semantics(objects: list[Obj]) -> None:
    keys = [object_key(obj) for obj in objects]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"
    for obj in objects:
        check_metadata(obj)
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for name, deployment in deployments.items():
        check_deployment(deployment)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [s for s, svc in services.items() if selects(svc["spec"]["selector"], pod_labels)]
        assert selecting == [name], f"pods of {name} selected by Services {selecting}"
    for obj in objects:
        if obj["kind"] == "Ingress":
            check_ingress(obj, services)
        if obj["kind"] == "HorizontalPodAutoscaler":
            assert obj["spec"]["scaleTargetRef"]["name"] in deployments
            assert "replicas" not in deployments[obj["spec"]["scaleTargetRef"]["name"]]["spec"]
            assert 1 <= obj["spec"]["minReplicas"] <= obj["spec"]["maxReplicas"]


def check_metadata(obj: Obj) -> None:
    name = obj["metadata"]["name"]
    pattern, limit = (_DNS_1035, 63) if obj["kind"] == "Service" else (_DNS_SUBDOMAIN, 253)
    assert len(name) <= limit and pattern.match(name), f"bad {obj['kind']} name {name!r}"
    assert _DNS_1123_LABEL.match(obj["metadata"]["namespace"])
    check_labels(obj["metadata"]["labels"])
    assert obj["metadata"]["labels"][ENDPOINT_LABEL]
    assert obj["metadata"]["annotations"][HASH_ANNOTATION] == content_hash(obj)
    assert all(isinstance(v, str) for v in obj["metadata"]["annotations"].values())


def check_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or _DNS_SUBDOMAIN.match(prefix), key
        assert len(name) <= 63 and _LABEL_VALUE.match(name), key
        assert isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value), (key, value)


def check_deployment(deployment: Obj) -> None:
    spec = deployment["spec"]
    template_labels = spec["template"]["metadata"]["labels"]
    check_labels(template_labels)
    assert selects(spec["selector"]["matchLabels"], template_labels)
    pod = spec["template"]["spec"]
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert _DNS_1123_LABEL.match(container["name"])
        assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes
        assert all(
            _ENV_NAME.match(e["name"]) and isinstance(e["value"], str) for e in container.get("env", [])
        )
        check_resources(container.get("resources", {}))
    check_labels(pod.get("nodeSelector", {}))
    ports = [p["containerPort"] for p in pod["containers"][0]["ports"]]
    assert all(1 <= p <= 65535 for p in ports)
    for probe in ("livenessProbe", "readinessProbe"):
        assert pod["containers"][0][probe]["httpGet"]["port"] in ports
        assert pod["containers"][0][probe]["httpGet"]["path"].startswith("/")
    check_pod_security(pod)


def check_pod_security(pod: Obj) -> None:
    """Locked down is all or nothing: no token, RuntimeDefault seccomp, and every container (init too)
    without privilege escalation or capabilities; a non-root pod has no container running as uid 0."""
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    if "securityContext" not in pod:
        assert "automountServiceAccountToken" not in pod
        assert all("securityContext" not in c for c in containers)
        return
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
        if pod["securityContext"].get("runAsNonRoot"):
            assert context.get("runAsUser", pod["securityContext"].get("runAsUser")) != 0


def check_resources(resources: Obj) -> None:
    """What the API server checks on resources: quantities, requests within limits, devices exact."""
    requests, limits = resources.get("requests", {}), resources.get("limits", {})
    for name, text in [*requests.items(), *limits.items()]:
        assert isinstance(text, str) and quantity_value(text) >= 0, (name, text)
    for name, text in requests.items():
        native = name in ("cpu", "memory", "ephemeral-storage")
        if native and name in limits:
            assert quantity_value(text) <= quantity_value(limits[name]), (name, text, limits[name])
        if not native:
            assert name in limits and quantity_value(text) == quantity_value(limits[name]), name


def check_ingress(ingress: Obj, services: dict[str, Obj]) -> None:
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"].startswith("/")
    backend = path["backend"]["service"]
    action = ingress["metadata"]["annotations"].get(WEIGHTED_ROUTING_ANNOTATION)
    if action is None:
        assert backend["name"] in services and backend["port"] == {"number": 80}
        return
    assert backend == {"name": "weighted-routing", "port": {"name": "use-annotation"}}
    groups = json.loads(action)["forwardConfig"]["targetGroups"]
    assert {g["serviceName"] for g in groups} <= set(services)
    assert sum(g["weight"] for g in groups) == 100 and all(g["weight"] > 0 for g in groups)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# ----------------------------------------------------------------------------- corpus of combinations

STATES = ("deploying", "running", "stopped")
CANARIES: tuple[Obj | None, ...] = (None, {"image": "vllm/vllm-openai:v0.7.0", "weight": 20, "replicas": 2})
AUTOSCALING: tuple[Obj | None, ...] = (
    None,
    {"enabled": False},
    {"enabled": True, "min_replicas": 2, "max_replicas": 8, "metrics": [{"type": "memory", "target": 75}]},
)
ACCELERATORS: tuple[Obj, ...] = (
    {"gpu_count": 1},
    {"gpu_count": 0},
    {"accelerator": "neuron", "gpu_count": 2},
)
MODELS: tuple[Obj, ...] = (
    {},
    {"model_path": "/models/m"},
    {"model_source": "s3://my-models/llama-3/"},
    {"model_source": "meta-llama/Llama-3.1-8B"},
)
# Options that do not change the set of objects: each appears many times across the product.
SERVERS: tuple[Obj, ...] = (
    {"image": "vllm/vllm-openai:v0.6.3"},
    {"image": "ghcr.io/huggingface/text-generation-inference:2.4.0", "args": ["--model-id", "/models/m"]},
    {
        "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
        "command": ["tritonserver"],
        "args": ["--http-port=8000"],
    },
    {"image": "registry.example.com:5000/Team/VLLM@sha256:" + "a" * 64, "args": ["--root-path=/x"]},
    {"image": "python:3.12", "command": ["python", "-m", "http.server", "9000"], "port": 9000},
)
EXTRAS: tuple[Obj, ...] = (
    {},
    {"env": {"HF_HOME": "/models", "MAX_TOKENS": 4096, "_X": ""}, "capacity_type": "spot"},
    {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}}},
    {
        "tolerations": [{"key": "team", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"pool": "g5"},
    },
    {"region_image_uris": {REGION: "1.dkr.ecr.us-east-1.amazonaws.com/x:1"}, "capacity_type": "on-demand"},
    {"health_check_path": "/v2/health/ready", "replicas": 0, "resources": {"limits": {"memory": "64Gi"}}},
)
NAMES = ("demo", "a", "m" * 53, "llama-3-8b-instruct")


def combination_items() -> Iterator[Obj]:
    product = itertools.product(STATES, CANARIES, AUTOSCALING, ACCELERATORS, MODELS)
    for index, (state, canary, autoscaling, accelerator, model) in enumerate(product):
        spec: Obj = {**SERVERS[index % len(SERVERS)], **EXTRAS[index % len(EXTRAS)], **accelerator, **model}
        if canary is not None:
            spec["canary"] = canary
        if autoscaling is not None:
            spec["autoscaling"] = autoscaling
        yield {
            "endpoint_name": NAMES[index % len(NAMES)],
            "desired_state": state,
            "target_regions": [REGION],
            "namespace": "gco-inference",
            "spec": spec,
        }


def test_every_feature_combination_renders_valid_objects() -> None:
    seen: set[str] = set()
    items = list(combination_items())
    kinds: set[tuple[str, bool]] = set()
    for index, item in enumerate(items):
        options = replace(OPTIONS, pod_lockdown=index % 2 == 0)  # GCO's pod template, and locked down
        objects = render_endpoint(Endpoint.from_item(item), REGION, options)
        assert objects, item
        assert_valid(objects, seen)
        kinds |= {(o["kind"], o["metadata"]["name"].endswith("-canary")) for o in objects}
    assert len(items) == 3 * 2 * 3 * 3 * 4
    assert kinds == {
        ("Deployment", False),
        ("Service", False),
        ("Ingress", False),
        ("HorizontalPodAutoscaler", False),
        ("Deployment", True),
        ("Service", True),
    }


def test_validation_catches_what_it_should() -> None:
    """The check itself: an unknown field and a wrong type are refused."""
    objects = render_endpoint(Endpoint.from_item(next(combination_items())), REGION, OPTIONS)
    bad = json.loads(json.dumps(objects[0]))
    bad["spec"]["template"]["spec"]["containers"][0]["tolerations"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)
    bad = json.loads(json.dumps(objects[1]))
    bad["spec"]["ports"][0]["port"] = "80"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33.0", strict=True)


# ----------------------------------------------------------------------------- hypothesis

_name_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-")
names = st.builds(
    lambda first, middle, last: first + middle[:51] + last,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(_name_chars, max_size=60),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
)
images = st.one_of(
    st.sampled_from(
        [
            "vllm/vllm-openai:latest",
            "ghcr.io/huggingface/text-generation-inference:3",
            "nvcr.io/nvidia/tritonserver:24.08-py3",
            "public.ecr.aws/neuron/pytorch-inference-neuronx:2.1",
            "localhost:5000/x",
            "UPPER/Case_image:TAG",
        ]
    ),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc", "Zs")), min_size=1, max_size=80),
)
quantities = st.one_of(
    st.integers(0, 64),
    st.sampled_from(["100m", "1.5", "4Gi", "512Mi", "2", "1e3", "0.5"]),
)
resource_maps = st.dictionaries(
    st.sampled_from(["cpu", "memory", "ephemeral-storage"]), quantities, max_size=3
)
env_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z")
arg_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
label_parts = st.from_regex(r"\A[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?\Z")
label_keys = st.one_of(
    label_parts, st.builds(lambda p, n: f"{p}.io/{n}", st.from_regex(r"\A[a-z]{1,8}\Z"), label_parts)
)
tolerations = st.one_of(
    st.builds(
        lambda key, value, effect: {"key": key, "operator": "Equal", "value": value, "effect": effect},
        label_keys,
        label_parts,
        st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
    ),
    st.builds(lambda key: {"key": key, "operator": "Exists"}, label_keys),
    st.builds(
        lambda seconds: {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds},
        st.integers(0, 3600),
    ),
)
model_storage = st.one_of(
    st.just({}),
    st.builds(lambda path: {"model_path": path}, st.from_regex(r"\A/models/[a-z0-9/._-]{1,30}\Z")),
    st.builds(
        lambda key: {"model_source": f"s3://bucket-1/{key}"},
        st.from_regex(r"\A[A-Za-z0-9!_.*'()/=+,@-]{0,40}\Z"),
    ),
    st.builds(lambda org, model: {"model_source": f"{org}/{model}"}, label_parts, label_parts),
)
autoscaling = st.one_of(
    st.none(),
    st.builds(
        lambda enabled, low, extra, metrics: {
            "enabled": enabled,
            "min_replicas": low,
            "max_replicas": low + extra,
            "metrics": metrics,
        },
        st.booleans(),
        st.integers(1, 20),
        st.integers(0, 50),
        st.lists(
            st.builds(
                lambda t, v: {"type": t, "target": v}, st.sampled_from(["cpu", "memory"]), st.integers(1, 100)
            ),
            max_size=3,
        ),
    ),
)
canaries = st.one_of(
    st.none(),
    st.builds(
        lambda image, weight, replicas: {"image": image, "weight": weight, "replicas": replicas},
        images,
        st.integers(1, 99),
        st.integers(0, 5),
    ),
)


@st.composite
def specs(draw: st.DrawFn) -> Obj:
    spec: Obj = {"image": draw(images), **draw(model_storage)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "port": st.integers(1, 65535),
        "replicas": st.integers(0, 20),
        "gpu_count": st.integers(0, 16),
        "health_check_path": st.from_regex(r"\A/[A-Za-z0-9/._~-]{0,30}\Z"),
        "env": st.dictionaries(env_names, st.one_of(arg_text, st.integers()), max_size=4),
        "resources": st.fixed_dictionaries({}, optional={"requests": resource_maps, "limits": resource_maps}),
        "command": st.lists(arg_text, min_size=1, max_size=3),
        "args": st.lists(st.one_of(arg_text, st.just("--root-path")), max_size=4),
        "tolerations": st.lists(tolerations, max_size=3),
        "node_selector": st.dictionaries(label_keys, label_parts, max_size=3),
        "autoscaling": autoscaling,
        "canary": canaries,
        "capacity_type": st.sampled_from(["spot", "on-demand"]),
        "accelerator": st.sampled_from(["nvidia", "neuron"]),
        "region_image_uris": st.dictionaries(st.sampled_from([REGION, "eu-west-1"]), images, max_size=2),
        "run_as_non_root": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not None:
                spec[key] = value
    if spec.get("run_as_non_root") and draw(st.booleans()):
        spec["run_as_user"] = draw(st.integers(1, 2**31 - 1))
    return spec


records = st.builds(
    lambda name, state, spec: {
        "endpoint_name": name,
        "desired_state": state,
        "target_regions": [REGION],
        "spec": spec,
    },
    names,
    st.sampled_from(["deploying", "running", "stopped"]),
    specs(),
)


GENERATED = 60
#: A property that holds because every record was refused proves nothing about rendering: at least this
#: share of the generated records must render (measured over six seeds: 83 to 100 % do).
MIN_ACCEPTED_SHARE = 0.5


def check_generated_record(item: Obj) -> str:
    """Render ``item`` and validate the objects, or check that it is refused by field; returns which."""
    try:
        endpoint = Endpoint.from_item(item)
    except InvalidEndpointError as exc:
        assert exc.problems and all(path and message for path, message in exc.problems)
        event(f"refused: {exc.problems[0][0]}")
        return "refused"
    try:
        objects = render_endpoint(endpoint, REGION, OPTIONS)
    except InvalidEndpointError as exc:  # what only the rendered pair shows (e.g. request above limit)
        assert exc.problems[0][0].startswith("spec.resources.")
        event("refused at render")
        return "refused"
    event("accepted")
    assert_valid(objects)
    return "accepted"


def test_generated_records_render_valid_objects_or_are_refused_by_field() -> None:
    outcomes: Counter[str] = Counter()

    @settings(max_examples=GENERATED, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records)
    def each(item: Obj) -> None:
        outcomes[check_generated_record(item)] += 1

    each()
    total = sum(outcomes.values())
    assert total >= GENERATED, outcomes
    assert outcomes["accepted"] >= MIN_ACCEPTED_SHARE * total, f"too few generated records render: {outcomes}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names, st.sampled_from(["vllm/vllm-openai:v0.6.3", "tgi:2", "nginx"]), autoscaling, canaries)
def test_generated_valid_records_are_accepted_and_valid(
    name: str, image: str, scaling: Obj | None, canary: Obj | None
) -> None:
    spec: Obj = {"image": image}
    if scaling is not None:
        spec["autoscaling"] = scaling
    if canary is not None and " " not in canary["image"] and canary["image"].strip():
        spec["canary"] = canary
    endpoint = Endpoint.from_item({"endpoint_name": name, "target_regions": [REGION], "spec": spec})
    assert_valid(render_endpoint(endpoint, REGION, OPTIONS))
