"""`gco-tasks endpoints ...` through typer's CliRunner against moto's DynamoDB server over HTTP."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app
from gco_tasks.core.config import load_settings

GCO_TOP_LEVEL_KEYS = {
    "endpoint_name",
    "desired_state",
    "target_regions",
    "namespace",
    "spec",
    "ingress_path",
    "created_at",
    "updated_at",
    "region_status",
}


@pytest.fixture()
def cli(dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(app, ["endpoints", "create-table"])
    assert result.exit_code == 0, result.output
    return runner


def run(cli: CliRunner, *args: str, code: int = 0, stdin: str | None = None) -> str:
    result = cli.invoke(app, ["endpoints", *args], input=stdin)
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.output


def raw_item(name: str) -> dict[str, Any]:
    store = EndpointStore.from_settings(load_settings())
    item = store.get_item(name)
    assert item is not None
    return item


def deploy_demo(cli: CliRunner, *extra: str) -> None:
    run(cli, "deploy", "demo", "-i", "vllm/vllm-openai:v0.6.3", "-r", "us-east-1", "--replicas", "2", *extra)


# ---- the "Must show" -------------------------------------------------------------------


def test_deploy_writes_exactly_gco_item(cli: CliRunner) -> None:
    assert "already exists" in run(cli, "create-table")
    deploy_demo(cli)
    item = raw_item("demo")
    assert set(item) == GCO_TOP_LEVEL_KEYS
    assert item["desired_state"] == "deploying"
    assert item["ingress_path"] == "/inference/demo"
    assert item["namespace"] == "gco-inference"
    assert item["region_status"] == {}
    assert item["created_at"] == item["updated_at"]
    assert item["spec"] == {
        "image": "vllm/vllm-openai:v0.6.3",
        "port": 8000,
        "replicas": 2,
        "gpu_count": 1,
        "health_check_path": "/health",
    }


def test_status_json_shows_the_record(cli: CliRunner) -> None:
    deploy_demo(cli)
    shown = json.loads(run(cli, "status", "demo", "--json"))
    regions = shown.pop("regions")
    assert shown == raw_item("demo"), "the record as stored (it has no env to redact), plus the view"
    assert [(r["region"], r["state"], r["targeted"]) for r in regions] == [("us-east-1", "pending", True)]


def test_scale_changes_spec_replicas(cli: CliRunner) -> None:
    deploy_demo(cli)
    run(cli, "scale", "demo", "--replicas", "3")
    assert raw_item("demo")["spec"]["replicas"] == 3
    assert "spec.replicas" in run(cli, "scale", "demo", "--replicas", "-1", code=1)


def test_deploy_bad_name_exits_1_naming_the_field(cli: CliRunner) -> None:
    out = run(cli, "deploy", "Bad_Name", "-i", "img:1", "-r", "us-east-1", code=1)
    assert "endpoint_name" in out and "DNS-1035" in out
    assert list(EndpointStore.from_settings(load_settings()).scan_items()) == []


def test_list_json_returns_every_item_past_one_scan_page(cli: CliRunner) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("gco-inference-endpoints")
    pad = "x" * 800  # 1,500 items x ~1 KB: more than one 1 MB Scan page
    with table.batch_writer() as batch:
        for i in range(1500):
            batch.put_item(
                Item={
                    "endpoint_name": f"ep-{i:04d}",
                    "desired_state": "running",
                    "target_regions": ["us-east-1"],
                    "spec": {"image": "img:1", "replicas": 1},
                    "created_at": f"2025-01-01T00:00:00.{i:06d}+00:00",
                    "pad": pad,
                }
            )
    first_page = table.scan()
    assert "LastEvaluatedKey" in first_page and len(first_page["Items"]) < 1500
    items = json.loads(run(cli, "list", "--json"))
    assert len(items) == 1500
    assert len({item["endpoint_name"] for item in items}) == 1500
    assert items[0]["endpoint_name"] == "ep-1499"  # newest first


# ---- the other verbs ------------------------------------------------------------------------------


def test_deploy_with_every_flag(cli: CliRunner) -> None:
    run(
        cli,
        "deploy", "full", "-i", "img:1", "-r", "us-east-1", "-r", "eu-west-1",
        "--gpu-count", "0", "--accelerator", "neuron", "--port", "9000", "--health-check-path", "/ready",
        "-e", "A=1", "-e", "B=x=y", "--node-selector", "tier=gpu", "--capacity-type", "spot",
        "--model-source", "s3://my-bucket/models/llama", "--model-path", "llama",
        "--extra-args", "--max-model-len 4096 --served-model-name 'my model'", "--namespace", "team-a",
        "--min-replicas", "2", "--max-replicas", "5", "--autoscale-metric", "memory:80", "-l", "team=ml",
    )  # fmt: skip
    item = raw_item("full")
    assert item["target_regions"] == ["us-east-1", "eu-west-1"]
    assert item["namespace"] == "team-a" and item["labels"] == {"team": "ml"}
    spec = item["spec"]
    assert spec["env"] == {"A": "1", "B": "x=y"}
    assert spec["args"] == ["--max-model-len", "4096", "--served-model-name", "my model"]
    assert spec["autoscaling"] == {
        "enabled": True,
        "min_replicas": 2,
        "max_replicas": 5,
        "metrics": [{"type": "memory", "target": 80}],
    }
    assert (spec["accelerator"], spec["capacity_type"], spec["gpu_count"]) == ("neuron", "spot", 0)
    assert spec["node_selector"] == {"tier": "gpu"}


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--accelerator", "amd"], "spec.accelerator"),
        (["--port", "0"], "spec.port"),
        (["--health-check-path", "health"], "spec.health_check_path"),
        (["-e", "1BAD=x"], "spec.env"),
        (["--model-source", "s3://b/$(reboot)"], "spec.model_source"),
        (["--min-replicas", "5", "--max-replicas", "2"], "spec.autoscaling"),
        (["--autoscale-metric", "gpu:50"], "spec.autoscaling.metrics[0].type"),
        (["--node-selector", "bad key=x"], "spec.node_selector"),
        (["-l", "team=not ok"], "labels.team"),
        (["--namespace", "Team_A"], "namespace"),
    ],
)
def test_deploy_invalid_input_exits_1_naming_the_field(cli: CliRunner, flags: list[str], field: str) -> None:
    out = run(cli, "deploy", "x", "-i", "img:1", "-r", "us-east-1", *flags, code=1)
    assert field in out


@pytest.mark.parametrize(
    "flags",
    [["-e", "NOEQUALS"], ["--label", "x"], ["--autoscale-metric", "cpu:high"], ["--bogus"], ["--port", "x"]],
)
def test_usage_errors_exit_2(cli: CliRunner, flags: list[str]) -> None:
    run(cli, "deploy", "x", "-i", "img:1", "-r", "us-east-1", *flags, code=2)


def test_deploy_twice_and_missing_region(cli: CliRunner) -> None:
    deploy_demo(cli)
    assert "already exists" in run(cli, "deploy", "demo", "-i", "img:2", "-r", "us-east-1", code=1)
    run(cli, "deploy", "other", "-i", "img:2", code=2)


def test_not_found_exits_1(cli: CliRunner) -> None:
    for args in (["status", "nope"], ["scale", "nope", "--replicas", "1"], ["stop", "nope", "-y"],
                 ["start", "nope"], ["delete", "nope", "-y"], ["update-image", "nope", "-i", "x"],
                 ["canary", "nope", "-i", "x"], ["promote", "nope"], ["rollback", "nope"]):  # fmt: skip
        assert "not found" in run(cli, *args, code=1)


def test_stop_start_delete_lifecycle(cli: CliRunner) -> None:
    deploy_demo(cli)
    run(cli, "stop", "demo", code=1, stdin="n\n")  # declined: aborted, nothing changed
    assert raw_item("demo")["desired_state"] == "deploying"
    run(cli, "stop", "demo", stdin="y\n")
    assert raw_item("demo")["desired_state"] == "stopped"
    run(cli, "start", "demo")
    assert raw_item("demo")["desired_state"] == "deploying"
    run(cli, "delete", "demo", "-y")
    assert raw_item("demo")["desired_state"] == "deleted"
    assert "is deleted" in run(cli, "start", "demo", code=1)
    assert "being deleted" in run(cli, "update-image", "demo", "-i", "img:2", code=1)
    run(cli, "delete", "demo", "-y")  # idempotent


def test_update_image_canary_promote_rollback(cli: CliRunner) -> None:
    deploy_demo(cli)
    run(cli, "stop", "demo", "-y")
    run(cli, "update-image", "demo", "-i", "vllm/vllm-openai:v0.7.0")
    item = raw_item("demo")
    assert item["spec"]["image"] == "vllm/vllm-openai:v0.7.0"
    assert item["desired_state"] == "deploying"  # as GCO: a spec change restarts a stopped endpoint

    assert "spec.canary.weight" in run(cli, "canary", "demo", "-i", "c:1", "--weight", "100", code=1)
    run(cli, "canary", "demo", "-i", "c:1", "--weight", "20")
    assert raw_item("demo")["spec"]["canary"] == {"image": "c:1", "weight": 20, "replicas": 1}
    run(cli, "rollback", "demo")
    assert "canary" not in raw_item("demo")["spec"]
    assert "no canary" in run(cli, "rollback", "demo", code=1)
    assert "no canary" in run(cli, "promote", "demo", code=1)

    run(cli, "canary", "demo", "-i", "c:2")
    run(cli, "promote", "demo")
    spec = raw_item("demo")["spec"]
    assert spec["image"] == "c:2" and "canary" not in spec


def test_status_table_and_list_table(cli: CliRunner) -> None:
    deploy_demo(cli)
    out = run(cli, "status", "demo")
    assert "(Waiting for the fleet to sync)" in out and "/inference/demo" in out

    store = EndpointStore.from_settings(load_settings())
    from gco_tasks.core.records import RegionStatus

    store.update_region_status("demo", "us-east-1", RegionStatus(state="running", replicas_ready=2,
                                                                 replicas_desired=2), None)  # fmt: skip
    store.update_region_status("demo", "eu-west-1", RegionStatus(state="error", error="quota"), None)
    out = run(cli, "status", "demo")
    for column in ("REGION", "STATE", "READY", "DESIRED", "LAST SYNC"):
        assert column in out
    assert "us-east-1" in out and "running" in out and "quota" in out

    out = run(cli, "list")
    assert "demo" in out and "2/2" in out
    assert "eu-west-1" not in run(cli, "list", "--region", "eu-west-1")  # targets us-east-1 only
    assert json.loads(run(cli, "list", "--region", "eu-west-1", "--json")) == []


def test_invalid_record_is_listed_and_status_names_the_problem(cli: CliRunner) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("gco-inference-endpoints")
    table.put_item(
        Item={"endpoint_name": "broken", "target_regions": ["us-east-1"], "spec": {"replicas": -2}}
    )
    assert "invalid" in run(cli, "list")
    out = run(cli, "status", "broken", code=1)
    assert "spec.image" in out and "spec.replicas" in out


def test_bad_configuration_exits_1(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_INTERVAL_SECONDS", "soon")
    assert "RECONCILE_INTERVAL_SECONDS" in run(cli, "list", code=1)
