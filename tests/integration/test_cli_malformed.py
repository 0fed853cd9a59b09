"""Bad input caught at the door, and the way out for records that got in anyway: unknown regions are
refused by the CLI (with the known ones and a guess), every verb on a malformed record points at
``repair`` and ``delete --force``, ``repair`` shows field by field what it will write and writes it only
after confirmation and only if nobody changed the record meanwhile, and a force-deleted malformed record
is torn down by the fleet and purged. Through typer's CliRunner, moto's DynamoDB over HTTP, and the
fleet harness on the sandbox API server."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import typer
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.purge import purge
from gco_tasks.worker.fleet import Fleet

from .harness import REGION, converge, run_cycle

SECRET = "s3cret-token-value"


@pytest.fixture()
def cli(dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("KNOWN_REGIONS", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["endpoints", "create-table"]).exit_code == 0
    return runner


def run(cli: CliRunner, *args: str, code: int = 0, stdin: str | None = None) -> str:
    result = cli.invoke(app, ["endpoints", *args], input=stdin)
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.output


def store() -> EndpointStore:
    return EndpointStore.from_settings(load_settings())


def item(name: str) -> dict[str, Any] | None:
    return store().get_item(name)


def put_raw(record: dict[str, Any]) -> None:
    """Write a record as another tool would: no validation."""
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("gco-inference-endpoints")
    table.put_item(Item=record)


def malformed(name: str = "broken", **spec: Any) -> dict[str, Any]:
    return {
        "endpoint_name": name,
        "desired_state": "runing",
        "target_regions": [REGION],
        "namespace": "gco-inference",
        "ingress_path": f"/inference/{name}",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "region_status": {REGION: {"state": "sideways"}},
        "spec": {
            "image": "vllm/vllm-openai:v0.6.3",
            "port": "eighty",
            "replicas": -2,
            "env": {"TOKEN": SECRET},
            "autoscaling": {"enabled": True, "metrics": [{"type": "gpu"}, {"type": "cpu", "target": 80}]},
            **spec,
        },
    }


# ---- unknown regions -----------------------------------------------------------------------------


def test_a_mistyped_region_is_refused_with_the_known_ones_and_a_guess(cli: CliRunner) -> None:
    out = run(cli, "deploy", "x", "-i", "nginx:1.27", "-r", "us-east-1", "-r", "us-est-1", code=1)
    assert "unknown region 'us-est-1'" in out
    assert "known regions: us-east-1, us-east-2" in out and "eu-west-1" in out
    assert "did you mean 'us-east-1'?" in out
    assert "add it to KNOWN_REGIONS or pass --allow-unknown-region" in out
    assert item("x") is None, "nothing written"
    assert "unknown region 'us-est-1'" in run(cli, "list", "--region", "us-est-1", code=1)
    result = cli.invoke(app, ["render", "x", "--region", "us-est-1"])
    assert result.exit_code == 1 and "did you mean 'us-east-1'?" in result.output


def test_a_new_region_needs_the_override_or_known_regions(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "unknown region 'mx-south-9'" in run(cli, "deploy", "x", "-i", "n:1", "-r", "mx-south-9", code=1)
    run(cli, "deploy", "x", "-i", "n:1", "-r", "mx-south-9", "--allow-unknown-region")
    assert (item("x") or {})["target_regions"] == ["mx-south-9"]
    out = run(cli, "deploy", "y", "-i", "n:1", "-r", "US East", "--allow-unknown-region", code=1)
    assert "invalid region 'US East'" in out, "the override never admits a name that is not a region's"
    monkeypatch.setenv("KNOWN_REGIONS", "us-east-1, mx-south-9")
    run(cli, "deploy", "y", "-i", "n:1", "-r", "mx-south-9")
    out = run(cli, "deploy", "z", "-i", "n:1", "-r", "eu-west-1", code=1)
    assert "known regions: us-east-1, mx-south-9 (add it to KNOWN_REGIONS" in out


# ---- malformed records ---------------------------------------------------------------------------


def test_every_verb_on_a_malformed_record_says_so_and_points_at_repair(cli: CliRunner) -> None:
    put_raw(malformed())
    for args in (["scale", "broken", "--replicas", "2"], ["update-image", "broken", "-i", "n:2"],
                 ["stop", "broken", "-y"], ["start", "broken"], ["delete", "broken", "-y"],
                 ["canary", "broken", "-i", "n:2"]):  # fmt: skip
        out = run(cli, *args, code=1)
        assert "endpoint 'broken' is malformed in the table" in out, out
        assert "spec.port" in out and "spec.replicas" in out
        assert "gco-tasks endpoints repair broken" in out and "delete --force broken" in out
        assert SECRET not in out
    assert (item("broken") or {})["spec"]["replicas"] == -2, "nothing written"


def test_repair_shows_each_field_asks_and_writes_safe_defaults(cli: CliRunner) -> None:
    put_raw(malformed())
    out = run(cli, "repair", "broken", code=1, stdin="n\n")
    for path in ("spec.port", "spec.replicas", "spec.autoscaling.metrics[0]", "desired_state",
                 "region_status.us-east-1"):  # fmt: skip
        assert path in out, path
    assert '"eighty"' in out and "8000" in out and '"running"' in out
    assert SECRET not in out
    assert (item("broken") or {})["spec"]["port"] == "eighty", "declined: nothing written"

    out = run(cli, "repair", "broken", "-y")
    assert "Endpoint broken repaired" in out
    record = item("broken")
    assert record is not None
    endpoint = Endpoint.from_item(record)
    assert (endpoint.spec.port, endpoint.spec.replicas, endpoint.desired_state) == (8000, 1, "running")
    assert record["spec"]["autoscaling"]["metrics"] == [{"type": "cpu", "target": 80}]
    assert record["spec"]["env"] == {"TOKEN": SECRET}, "what was valid is kept as it was"
    assert record["region_status"] == {} and record["updated_at"] != "2025-01-01T00:00:00+00:00"
    assert "nothing to repair" in run(cli, "repair", "broken")


def test_repair_without_a_safe_default_says_which_set_to_pass(cli: CliRunner) -> None:
    record = malformed(image=None)
    del record["spec"]["image"]
    put_raw(record)
    out = run(cli, "repair", "broken", "-y", code=1)
    assert "spec.image" in out and "--set spec.image=IMAGE" in out and "nothing written" in out
    assert "image" not in (item("broken") or {})["spec"]
    run(cli, "repair", "broken", "--set", "spec.image=nginx:1.27", "--set", "spec.replicas=3", "-y")
    endpoint = Endpoint.from_item(item("broken") or {})
    assert (endpoint.spec.image, endpoint.spec.replicas) == ("nginx:1.27", 3)
    assert "cannot read the path" in run(cli, "repair", "broken", "--set", "spec..x=1", code=1)
    assert "table's key" in run(cli, "repair", "broken", "--set", "endpoint_name=other", code=1)
    run(cli, "repair", "broken", "--set", "spec.port", code=2)


def test_repair_writes_nothing_over_a_concurrent_edit(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_raw(malformed())

    def someone_else_edits_while_we_confirm(*args: Any, **kwargs: Any) -> bool:
        put_raw({**malformed(), "updated_at": "2025-06-01T00:00:00+00:00", "labels": {"by": "someone"}})
        return True

    monkeypatch.setattr(typer, "confirm", someone_else_edits_while_we_confirm)
    out = run(cli, "repair", "broken", code=1)
    assert "changed meanwhile" in out and "nothing written" in out
    assert (item("broken") or {})["labels"] == {"by": "someone"}, "the other edit survives"


def test_repair_drops_a_target_region_no_fleet_serves(cli: CliRunner) -> None:
    run(cli, "deploy", "typo", "-i", "n:1", "-r", "us-east-1", "-r", "us-est-1", "--allow-unknown-region")
    out = run(cli, "repair", "typo", "-y")
    assert "target_regions[1]" in out and "did you mean 'us-east-1'?" in out
    assert (item("typo") or {})["target_regions"] == ["us-east-1"]


# ---- delete --force through the fleet ------------------------------------------------------------


def objects(fleet: Fleet, name: str) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in fleet.cluster.list_objects(endpoint_selector(name))}


def test_force_deleted_malformed_record_is_torn_down_and_purged(cli: CliRunner, fleet: Fleet) -> None:
    fleet.store.create(Endpoint.new("broken", parse_spec({"image": "nginx:1.27"}), [REGION]))
    run_cycle(fleet)
    assert objects(fleet, "broken")
    put_raw({**malformed(), "desired_state": "running"})
    assert run_cycle(fleet)[0]["state"] == "error"
    assert objects(fleet, "broken"), "malformed: reported, nothing deleted"

    assert "malformed" in run(cli, "delete", "broken", "-y", code=1)
    run(cli, "delete", "broken", "--force", "-y")
    assert (item("broken") or {})["desired_state"] == "deleted"
    results = run_cycle(fleet)
    assert results[0]["state"] == "deleting" and results[0]["actions"]  # deleted once a LIST finds none
    converge(fleet, lambda: (item("broken") or {})["region_status"][REGION]["state"] == "deleted")
    assert objects(fleet, "broken") == set()
    assert purge(fleet).purged == ["broken"]
    assert item("broken") is None


def test_force_delete_drops_unknown_regions_so_the_record_is_purged(cli: CliRunner, fleet: Fleet) -> None:
    run(cli, "deploy", "typo", "-i", "n:1", "-r", REGION, "-r", "us-est-1", "--allow-unknown-region")
    run_cycle(fleet)
    out = run(cli, "delete", "typo", "--force", "-y")
    assert "Dropped target regions" in out and "us-est-1" in out
    converge(fleet, lambda: (item("typo") or {})["region_status"][REGION]["state"] == "deleted")
    assert purge(fleet).purged == ["typo"]
    assert json.loads(run(cli, "list", "--json")) == []


def test_no_output_shows_the_env_of_a_malformed_record(cli: CliRunner) -> None:
    put_raw({**malformed(), "spec": {**malformed()["spec"], "env": [f"TOKEN={SECRET}"]}})
    outputs = [
        run(cli, "status", "broken", "--no-events", code=1),
        run(cli, "status", "broken", "--json", "--no-events"),
        run(cli, "list", "--json"),
        run(cli, "repair", "broken", "-y", code=1),
        run(cli, "scale", "broken", "--replicas", "2", code=1),
    ]
    for out in outputs:
        assert SECRET not in out, out
    assert json.loads(outputs[1])["spec"]["env"] == "***"
