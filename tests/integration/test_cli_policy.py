"""The region policy at the CLI's door (``cli/admission.py``): `endpoints deploy`, `scale`, `canary` and
the other spec edits refuse what a region with the same settings would report as ``error`` (over a cap,
a keyless toleration), before anything is written; `render` refuses it like a worker would. Caps come
from this process's environment, the same variables the fleet reads. Through typer's CliRunner against
moto's DynamoDB server over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, parse_spec

REGION = "us-east-1"
IMAGE = "vllm/vllm-openai:v0.6.3"


@pytest.fixture()
def store(dynamodb_url: str) -> EndpointStore:
    built = EndpointStore.from_settings(load_settings())
    built.create_table()
    return built


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.output


def deploy(*extra: str, code: int = 0) -> str:
    return run("endpoints", "deploy", "demo", "-i", IMAGE, "-r", REGION, *extra, code=code)


def test_deploy_over_a_cap_is_refused_naming_field_cap_and_setting(store: EndpointStore) -> None:
    out = deploy("--replicas", "33", "--gpu-count", "17", code=1)
    assert "invalid endpoint 'demo'" in out
    assert "spec.replicas: 33 is above this region's cap of 32 replicas (MAX_REPLICAS_PER_ENDPOINT)" in out
    assert "spec.gpu_count: 17 is above this region's cap of 16 devices per pod (MAX_GPUS_PER_POD)" in out
    assert store.get_item("demo") is None, "nothing written"
    deploy("--max-replicas", "40", code=1)
    assert store.get_item("demo") is None


def test_caps_come_from_the_environment(store: EndpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_REPLICAS_PER_ENDPOINT", "64")
    monkeypatch.setenv("MAX_GPUS_PER_ENDPOINT", "64")  # 40 replicas x 1 GPU (issue 22, finding 6)
    deploy("--replicas", "40")
    assert store.get("demo").spec.replicas == 40
    monkeypatch.setenv("MAX_REPLICAS_PER_ENDPOINT", "zero")
    out = run("endpoints", "scale", "demo", "--replicas", "2", code=1)
    assert "MAX_REPLICAS_PER_ENDPOINT" in out


def test_scale_and_canary_over_the_cap_are_refused_and_change_nothing(store: EndpointStore) -> None:
    deploy("--replicas", "2")
    before = store.get_item("demo")
    out = run("endpoints", "scale", "demo", "--replicas", "100", code=1)
    assert "spec.replicas: 100 is above this region's cap of 32" in out
    out = run("endpoints", "canary", "demo", "-i", "vllm/vllm-openai:v0.7.0", "--replicas", "33", code=1)
    assert "spec.canary.replicas: 33 is above" in out
    assert store.get_item("demo") == before
    run("endpoints", "scale", "demo", "--replicas", "32")
    assert store.get("demo").spec.replicas == 32


def test_a_record_already_over_a_cap_can_still_be_edited_and_brought_back(store: EndpointStore) -> None:
    """GCO's CLI or a direct write may have put it there: the edit is refused only for what it adds."""
    spec = parse_spec({"image": IMAGE, "replicas": 50, "tolerations": [{"operator": "Exists"}]})
    store.create(Endpoint.new("demo", spec, [REGION]))
    run("endpoints", "update-image", "demo", "-i", "vllm/vllm-openai:v0.7.0")
    out = run("endpoints", "scale", "demo", "--replicas", "60", code=1)
    assert "spec.replicas: 60" in out
    run("endpoints", "scale", "demo", "--replicas", "3")
    assert (store.get("demo").spec.replicas, store.get("demo").spec.image) == (3, "vllm/vllm-openai:v0.7.0")


def test_deploy_writes_the_non_root_opt_in(store: EndpointStore) -> None:
    out = deploy("--run-as-user", "1000", code=1)
    assert "spec.run_as_user: is only used with run_as_non_root: true" in out
    deploy("--run-as-non-root", "--run-as-user", "1000")
    item = store.get_item("demo")
    assert item is not None
    assert (item["spec"]["run_as_non_root"], item["spec"]["run_as_user"]) == (True, 1000)


def test_render_refuses_a_record_over_a_cap_like_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item: dict[str, Any] = {
        "endpoint_name": "demo",
        "target_regions": [REGION],
        "spec": {
            "image": IMAGE,
            "resources": {"limits": {"cpu": "128"}},
            "tolerations": [{"operator": "Exists"}],
        },
    }
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(item))
    out = run("render", "demo", "-f", str(path), "-r", REGION, code=1)
    assert "spec.resources.limits.cpu: 128 is above this region's cap of 96 per container" in out
    assert "spec.tolerations[0]: has no key" in out and "ALLOW_WILDCARD_TOLERATIONS=true" in out
    monkeypatch.setenv("MAX_CPU_PER_CONTAINER", "128")
    monkeypatch.setenv("ALLOW_WILDCARD_TOLERATIONS", "true")
    rendered = run("render", "demo", "-f", str(path), "-r", REGION, "-o", "json")
    assert json.loads(rendered)["items"][0]["kind"] == "Deployment"
