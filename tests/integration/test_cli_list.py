"""`gco-tasks endpoints list`: what each region reports, filtered by state, in four formats, against
moto's DynamoDB server over HTTP (records written as the fleet and GCO's monitor write them)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from gco_tasks.cli import app

PULL = "image nginx:bad cannot be pulled on 2 of 2 new pods"
LONG_NAME = "a-very-long-endpoint-name-that-is-fifty-three-chars-x"
LONG_IMAGE = (
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/inference/llama-3-70b-instruct:2026-12-07-build-1234"
)


@pytest.fixture()
def cli(dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "40")  # narrow: nothing may be cut short for it
    runner = CliRunner()
    assert runner.invoke(app, ["endpoints", "create-table"]).exit_code == 0
    return runner


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["endpoints", "list", *args])
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.output


def _status(state: str, ready: int, desired: int, age: float, error: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state, "replicas_ready": ready, "replicas_desired": desired}
    status["last_sync"] = (datetime.now(UTC) - timedelta(seconds=age)).isoformat()  # as the fixture runs
    return status | ({"error": error} if error else {})


def put(name: str, regions: list[str], status: dict[str, Any], **extra: Any) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("gco-inference-endpoints")
    item = {
        "endpoint_name": name,
        "desired_state": "running",
        "target_regions": regions,
        "namespace": "gco-inference",
        "spec": {"image": "nginx:1.27", "replicas": 2, "env": {"TOKEN": "secret-value"}},
        "created_at": f"2026-12-0{len(name) % 9 + 1}T00:00:00+00:00",
        "region_status": status,
    }
    table.put_item(Item=item | extra)


@pytest.fixture()
def fleet(cli: CliRunner) -> CliRunner:
    put("web", ["us-east-1", "eu-west-1"], {
        "us-east-1": _status("running", 2, 2, age=30),
        "eu-west-1": _status("error", 0, 2, age=40, error=PULL),
    })  # fmt: skip
    put("old", ["us-east-1"], {"us-east-1": _status("running", 1, 1, age=3 * 3600)})  # stale: > 2 x 300 s
    put("new", ["us-east-1"], {})
    put(LONG_NAME, ["us-east-1"], {"us-east-1": _status("updating", 1, 2, age=5)},
        spec={"image": LONG_IMAGE, "replicas": 2})  # fmt: skip
    return cli


def _words(out: str, name: str) -> str:
    """The row of ``name``, its columns' padding squeezed."""
    (line,) = [line for line in out.splitlines() if line.split()[0] == name]
    return " ".join(line.split())


def test_with_a_region_each_row_is_what_that_region_reports(fleet: CliRunner) -> None:
    out = run(fleet, "-r", "eu-west-1")
    assert out.splitlines()[0].split() == ["NAME", "STATE", "READY", "LAST", "SYNC", "MESSAGE"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["web"]  # only what targets it
    assert re.fullmatch(
        r"web error 0/2 \d+[sm] ago image nginx:bad cannot be pulled on 2 of 2 new pods", _words(out, "web")
    )
    out = run(fleet, "--region", "us-east-1")
    assert re.fullmatch(r"web running 2/2 \d+[sm] ago", _words(out, "web"))
    assert _words(out, "old") == "old running 1/1 3h ago (stale)"
    assert _words(out, "new") == "new pending 0/0 -"
    assert "secret-value" not in out


def test_names_and_images_are_never_cut_short(fleet: CliRunner) -> None:
    for args in (("-r", "us-east-1", "-o", "wide"), ("-o", "wide")):
        out = run(fleet, *args)
        assert LONG_NAME in out and LONG_IMAGE in out, out
        assert "…" not in out and "..." not in out


def test_without_a_region_one_column_per_target_region(fleet: CliRunner) -> None:
    out = run(fleet)
    assert out.splitlines()[0].split() == ["NAME", "DESIRED", "STATE", "EU-WEST-1", "US-EAST-1"]
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"web", "old", "new", LONG_NAME}
    assert _words(out, "web") == "web running error 0/2 running 2/2"
    assert _words(out, "old") == "old running - running 1/1 (stale)"


def test_state_filters_on_the_regions_report(fleet: CliRunner) -> None:
    assert [line.split()[0] for line in run(fleet, "--state", "error").splitlines()[1:]] == ["web"]
    assert run(fleet, "-r", "us-east-1", "--state", "error") == "No endpoints in state error.\n"
    assert [
        line.split()[0] for line in run(fleet, "-r", "us-east-1", "--state", "updating").splitlines()[1:]
    ] == [LONG_NAME]
    assert [line.split()[0] for line in run(fleet, "--state", "pending").splitlines()[1:]] == ["new"]
    out = run(fleet, "--state", "broken", code=1)
    assert "--state 'broken' is not a region state; use one of pending, creating" in out


def _ageless(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listing without the regions' ages, the one thing that moves between two invocations."""
    for item in data:
        for region in item["regions"]:
            assert region.pop("age_seconds") > 0
    return data


def test_json_and_yaml_carry_the_record_and_the_regions_view(fleet: CliRunner) -> None:
    data = json.loads(run(fleet, "-r", "eu-west-1", "-o", "json"))
    assert [item["endpoint_name"] for item in data] == ["web"]
    (region,) = data[0]["regions"]
    assert (region["region"], region["state"], region["stale"], region["ready"]) == (
        "eu-west-1",
        "error",
        False,
        0,
    )
    assert data[0]["spec"]["env"] == {"TOKEN": "***"}
    as_yaml = yaml.safe_load(run(fleet, "-r", "eu-west-1", "-o", "yaml"))
    assert (
        _ageless(json.loads(run(fleet, "-r", "eu-west-1", "--json"))) == _ageless(as_yaml) == _ageless(data)
    )
    stale = json.loads(run(fleet, "-o", "json", "--state", "running"))
    old = next(item for item in stale if item["endpoint_name"] == "old")
    assert old["regions"][0]["stale"] is True
    assert "secret-value" not in run(fleet, "-o", "yaml")


def test_an_invalid_record_is_listed_as_invalid_with_its_problem(cli: CliRunner) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("gco-inference-endpoints")
    table.put_item(
        Item={"endpoint_name": "broken", "target_regions": ["us-east-1"], "spec": {"replicas": -2}}
    )
    out = run(cli, "-r", "us-east-1")
    assert "broken   invalid" in out and "invalid record: spec" in out
    assert [line.split()[0] for line in run(cli, "--state", "invalid").splitlines()[1:]] == ["broken"]
