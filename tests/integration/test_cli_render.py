"""`gco-tasks render`: the operator's dry run, from a file and from the table (moto's DynamoDB over HTTP).

The issue's must-show runs the installed command in a real process; the rest go through typer's
CliRunner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, parse_spec

REGION = "us-east-1"


def demo_item(**spec: Any) -> dict[str, Any]:
    return {
        "endpoint_name": "demo",
        "desired_state": "running",
        "target_regions": [REGION],
        "namespace": "gco-inference",
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "gpu_count": 1, **spec},
        "ingress_path": "/inference/demo",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "region_status": {},
    }


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(data))
    return path


def invoke(*args: str, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(app, ["render", *args])
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    return result.stdout, result.stderr


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


# ----------------------------------------------------------------------------- must show


def test_must_show_vllm_with_20_percent_canary_as_json_list(tmp_path: Path) -> None:
    record = write(tmp_path, demo_item(canary={"image": "vllm/vllm-openai:v0.7.0", "weight": 20}))
    command = [sys.executable, "-m", "gco_tasks.cli", "render", "demo", "--file", str(record)]
    done = subprocess.run(
        [*command, "--region", REGION, "-o", "json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    objects = by_kind_name(listing["items"])
    annotations = objects[("Ingress", "inference-demo")]["metadata"]["annotations"]
    groups = json.loads(annotations["alb.ingress.kubernetes.io/actions.weighted-routing"])["forwardConfig"]
    assert [(g["serviceName"], g["weight"]) for g in groups["targetGroups"]] == [
        ("demo", 80),
        ("demo-canary", 20),
    ]
    canary = objects[("Deployment", "demo-canary")]["spec"]["template"]["spec"]["containers"][0]
    assert canary["image"] == "vllm/vllm-openai:v0.7.0"
    args = canary["args"]
    assert args[args.index("--root-path") + 1] == "/inference/demo"


# ----------------------------------------------------------------------------- from a file


def test_yaml_stream_holds_the_same_objects_as_the_json_list(tmp_path: Path) -> None:
    record = str(write(tmp_path, demo_item(autoscaling={"enabled": True})))
    as_json, _ = invoke("demo", "--file", record, "--region", REGION, "-o", "json")
    as_yaml, _ = invoke("demo", "-f", record, "-r", REGION)
    documents = list(yaml.safe_load_all(as_yaml))
    assert documents == json.loads(as_json)["items"]
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"]
    assert as_yaml.count("\n---\n") == 3


def test_region_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGION", "eu-west-1")
    item = demo_item(region_image_uris={"eu-west-1": "1.dkr.ecr.eu-west-1.amazonaws.com/vllm:1"})
    item["target_regions"] = [REGION, "eu-west-1"]
    out, _ = invoke("demo", "-f", str(write(tmp_path, item)), "-o", "json")
    deployment = json.loads(out)["items"][0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/vllm:1")


def test_options_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SYNC_IMAGE", "mirror.local/aws-cli:2.22.35")
    item = demo_item(model_source="s3://models/llama")
    out, _ = invoke("demo", "-f", str(write(tmp_path, item)), "-r", REGION, "-o", "json")
    pod = json.loads(out)["items"][0]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "mirror.local/aws-cli:2.22.35"


def test_aws_get_item_output_is_accepted(tmp_path: Path) -> None:
    typed = {
        "Item": {
            "endpoint_name": {"S": "demo"},
            "desired_state": {"S": "stopped"},
            "target_regions": {"L": [{"S": REGION}]},
            "spec": {"M": {"image": {"S": "vllm/vllm-openai:v0.6.3"}, "replicas": {"N": "3"}}},
        }
    }
    out, _ = invoke("demo", "-f", str(write(tmp_path, typed)), "-r", REGION, "-o", "json")
    items = json.loads(out)["items"]
    assert [(o["kind"], o["spec"].get("replicas")) for o in items] == [("Deployment", 0), ("Service", None)]


def test_untargeted_region_prints_nothing_and_says_why(tmp_path: Path) -> None:
    out, err = invoke("demo", "-f", str(write(tmp_path, demo_item())), "-r", "ap-south-1", "-o", "json")
    assert json.loads(out)["items"] == []
    assert "does not target ap-south-1" in err


def test_invalid_record_exits_1_naming_each_field(tmp_path: Path) -> None:
    item = demo_item(port="http", canary={"image": "x", "weight": 150})
    _, err = invoke("demo", "-f", str(write(tmp_path, item)), "-r", REGION, code=1)
    assert "spec.port" in err and "spec.canary.weight" in err
    assert "Traceback" not in err


def test_record_kubernetes_would_refuse_exits_1_naming_the_field(tmp_path: Path) -> None:
    item = demo_item(resources={"requests": {"cpu": "8"}, "limits": {"cpu": "2"}})
    _, err = invoke("demo", "-f", str(write(tmp_path, item)), "-r", REGION, code=1)
    assert "spec.resources.requests.cpu" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "one endpoint record"),
        (json.dumps(demo_item()), "not 'other'"),
    ],
)
def test_unusable_file_exits_1(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rec.json"
    path.write_text(content)
    name = "other" if "not 'other'" in message else "demo"
    _, err = invoke(name, "-f", str(path), "-r", REGION, code=1)
    assert message in err


# ----------------------------------------------------------------------------- from the table


@pytest.fixture()
def store(dynamodb_url: str) -> EndpointStore:
    built = EndpointStore.from_settings(load_settings())
    built.create_table()
    return built


def test_reads_the_record_from_the_table(store: EndpointStore) -> None:
    spec = parse_spec(
        {"image": "ghcr.io/huggingface/text-generation-inference:2.4", "model_source": "s3://models-bucket/m"}
    )
    store.create(Endpoint.new("demo", spec, [REGION]))
    out, _ = invoke("demo", "--region", REGION, "-o", "json")
    objects = by_kind_name(json.loads(out)["items"])
    assert set(objects) == {("Deployment", "demo"), ("Service", "demo"), ("Ingress", "inference-demo")}
    sync = objects[("Deployment", "demo")]["spec"]["template"]["spec"]["initContainers"][0]
    assert sync["command"][:4] == ["aws", "s3", "sync", "s3://models-bucket/m"]


def test_missing_record_exits_1(store: EndpointStore) -> None:
    _, err = invoke("nope", "--region", REGION, code=1)
    assert "'nope' not found" in err
