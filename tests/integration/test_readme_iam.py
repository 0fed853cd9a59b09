"""The IAM policies of docs/production.md are exactly what the code calls: the worker's policy lists the
DynamoDB actions the fleet makes over an endpoint's whole life (fan-out, reconcile with and without a
snapshot, promotion, watchdog, deletion, region removal, purge), and the operators' policy the ones the
``gco-tasks endpoints`` CLI makes; neither lists one that is not used. Calls are seen by botocore's
``before-call`` hook on the clients themselves, against moto's DynamoDB over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app
from gco_tasks.flows.purge import purge
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.flows.watchdog import watchdog
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.telemetry import run_reconcile_batch

from .harness import REGION, converge, reported_state

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "production.md").read_text()


def policy_actions(*sids: str) -> set[str]:
    actions: set[str] = set()
    for block in re.findall(r"```json\n(.*?)```", GUIDE, re.S):
        for statement in json.loads(block).get("Statement", []):
            if statement.get("Sid") in sids:
                actions |= {action.removeprefix("dynamodb:") for action in statement["Action"]}
    assert actions, f"no statement {sids} in docs/production.md"
    return actions


def recorder(calls: set[str]) -> Callable[..., None]:
    def hook(model: Any, **_: Any) -> None:
        calls.add(model.name)

    return hook


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["endpoints", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_worker_policy_is_what_the_fleet_calls(fleet: Fleet) -> None:
    cli("deploy", "demo", "-i", "nginx:1.27", "-r", REGION, "-r", "eu-west-1")
    calls: set[str] = set()
    fleet.store.client.meta.events.register("before-call.dynamodb", recorder(calls))
    converge(fleet, lambda: reported_state(fleet) == "running")
    reconcile(fleet, "demo")  # ad hoc, as `celery call` does: reads the record itself
    run_reconcile_batch(fleet, [("demo", None)])  # a fan-out's batch: its records read at once
    watchdog(fleet)
    cli("repair", "demo", "--set", f'target_regions=["{REGION}"]', "-y")  # a region removed
    cli("delete", "demo", "-y")
    converge(fleet, lambda: reported_state(fleet) == "deleted")
    assert purge(fleet).purged == ["demo"]
    assert calls == policy_actions("GcoTasksWorker")


def test_the_operator_policy_is_what_the_cli_calls(
    dynamodb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: set[str] = set()
    original = EndpointStore.from_settings

    def hooked(settings: Any) -> EndpointStore:
        store = original(settings)
        store.client.meta.events.register("before-call.dynamodb", recorder(calls))
        return store

    monkeypatch.setattr(EndpointStore, "from_settings", hooked)
    cli("create-table")
    cli("deploy", "demo", "-i", "nginx:1.27", "-r", REGION)
    cli("list")
    cli("status", "demo", "--no-events")
    cli("scale", "demo", "--replicas", "2")
    cli("update-image", "demo", "-i", "nginx:1.28")
    cli("canary", "demo", "-i", "nginx:1.29", "--weight", "10")
    cli("rollback", "demo")
    cli("stop", "demo", "-y")
    cli("start", "demo")
    cli("repair", "demo")
    cli("delete", "demo", "--force", "-y")
    assert calls == policy_actions("GcoTasksOperator", "GcoTasksCreateTable")
