"""Everything we render is valid to the real API server: every render case of the unit tests, and a
hypothesis-generated family of endpoint records, applied with server-side apply (field manager
``gco-tasks``, ``dryRun=All``) to kube-apiserver. Nothing is stored.

The rule for generated records: whatever our own validation accepts (``Endpoint.from_item`` and
``render_endpoint``), the server accepts; whatever the server would refuse, our validation refuses
first, naming the field. The strategy leans on the edges the server checks (toleration keys and values,
``tolerationSeconds``, Ingress paths, label-like values, quantities), and the test asserts that most of its
cases were valid records, so it cannot pass by generating only junk. Derandomized: the same cases every
run (no flake); widen ``max_examples`` locally to explore.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from gco_sandbox.controlplane import ControlPlane
from gco_tasks.adapters.cluster import ClusterError, ClusterGateway
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, content_hash, object_key, render_endpoint
from tests.unit.core.rendering import test_schema as corpus
from tests.unit.core.rendering.test_snapshots import CASES

REGION = "us-east-1"
Obj = dict[str, Any]


class DryRun:
    """Server-side apply with ``dryRun=All`` through the fleet's gateway: the API server validates,
    admits and discards."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.seen: set[str] = set()
        self.calls = 0

    def refusal(self, obj: Obj) -> str | None:
        """None when the server accepts ``obj`` (through the fleet's own gateway), else what it said."""
        digest = content_hash(obj)
        if digest in self.seen:
            return None
        self.calls += 1
        try:
            ClusterGateway(self.api_client, obj["metadata"]["namespace"]).apply(obj, dry_run=True)
        except ClusterError as exc:
            return str(exc)
        self.seen.add(digest)
        return None

    def assert_accepted(self, objects: list[Obj], record: Obj) -> None:
        for obj in objects:
            refusal = self.refusal(obj)
            assert refusal is None, (
                f"the API server refused {object_key(obj)}, which our validation accepted: {refusal}\n"
                f"record: {json.dumps(record, default=str)[:2000]}"
            )


@pytest.fixture(scope="module")
def dry_run(real_cluster: ControlPlane) -> Iterator[DryRun]:
    with real_cluster.api_client() as api_client:
        yield DryRun(api_client)


def test_every_snapshot_case_applies_cleanly(dry_run: DryRun) -> None:
    for case, item in sorted(CASES.items()):
        objects = render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())
        assert objects, case
        dry_run.assert_accepted(objects, item)


def test_every_feature_combination_applies_cleanly(dry_run: DryRun) -> None:
    items = list(corpus.combination_items())
    before = dry_run.calls
    for item in items:
        for lockdown in (True, False):  # locked-down pods, and GCO's template
            options = replace(corpus.OPTIONS, pod_lockdown=lockdown)
            dry_run.assert_accepted(render_endpoint(Endpoint.from_item(item), REGION, options), item)
    assert len(items) == 216 and dry_run.calls - before > 100  # distinct objects, each sent once


# ----------------------------------------------------------------------------- generated records

text_keys = st.text(st.sampled_from("abcXYZ019-_./ !"), min_size=1, max_size=12)
edge_tolerations = st.fixed_dictionaries(
    {
        "key": st.one_of(corpus.label_keys, text_keys),
        "operator": st.sampled_from(["Equal", "Exists"]),
    },
    optional={
        "value": st.one_of(corpus.label_parts, st.text(st.sampled_from("ab-_.!"), max_size=70)),
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute", ""]),
        "tolerationSeconds": st.integers(-10, 3600),
    },
)
ingress_paths = st.one_of(
    st.just(""),
    st.from_regex(r"\A/inference/[a-z0-9]{1,8}\Z"),
    st.from_regex(r"\A(/[a-z0-9.%2Ff]{0,4}){1,4}/?\Z"),
)
images = st.sampled_from(
    [
        "vllm/vllm-openai:v0.6.3",
        "ghcr.io/huggingface/text-generation-inference:2.4.0",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tritonserver:24.05-neuronx",
        "registry.example.com:5000/Team/VLLM@sha256:" + "a" * 64,
        "UPPER/Case_image:TAG",
    ]
)
canaries = st.one_of(
    st.none(),
    st.fixed_dictionaries({"image": images, "weight": st.integers(1, 99), "replicas": st.integers(0, 5)}),
)


@st.composite
def records(draw: st.DrawFn) -> Obj:
    spec: Obj = {"image": draw(images), **draw(corpus.model_storage)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "port": st.integers(1, 65535),
        "replicas": st.integers(0, 20),
        "gpu_count": st.integers(0, 16),
        "health_check_path": st.from_regex(r"\A/[A-Za-z0-9/._~%-]{0,30}\Z"),
        "env": st.dictionaries(corpus.env_names, st.one_of(corpus.arg_text, st.integers()), max_size=4),
        "resources": st.fixed_dictionaries(
            {}, optional={"requests": corpus.resource_maps, "limits": corpus.resource_maps}
        ),
        "command": st.lists(corpus.arg_text, min_size=1, max_size=3),
        "args": st.lists(st.one_of(corpus.arg_text, st.just("--root-path")), max_size=4),
        "tolerations": st.lists(st.one_of(corpus.tolerations, edge_tolerations), max_size=3),
        "node_selector": st.dictionaries(corpus.label_keys, corpus.label_parts, max_size=3),
        "autoscaling": corpus.autoscaling,
        "canary": canaries,
        "capacity_type": st.sampled_from(["spot", "on-demand"]),
        "accelerator": st.sampled_from(["nvidia", "neuron"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            value = draw(strategy)
            if value is not None:
                spec[key] = value
    record: Obj = {
        "endpoint_name": draw(corpus.names),
        "desired_state": draw(st.sampled_from(["deploying", "running", "stopped"])),
        "target_regions": [REGION],
        "spec": spec,
    }
    path = draw(ingress_paths)
    if path:
        record["ingress_path"] = path
    return record


def test_generated_records_we_accept_are_accepted_by_the_server(dry_run: DryRun) -> None:
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(records())
    def check(item: Obj) -> None:
        try:
            # The region's caps are not what the server is asked about here (corpus.OPTIONS: uncapped).
            objects = render_endpoint(Endpoint.from_item(item), REGION, corpus.OPTIONS)
        except InvalidEndpointError as exc:
            assert exc.problems and all(path and message for path, message in exc.problems), exc
            outcomes["refused by our validation"] += 1
            return
        dry_run.assert_accepted(objects, item)
        outcomes["valid and accepted by the server"] += 1

    check()
    total = sum(outcomes.values())
    assert total >= 100, outcomes
    assert outcomes["valid and accepted by the server"] >= 0.5 * total, outcomes
