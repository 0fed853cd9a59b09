"""`gco-tasks diff NAME --region R` against each API server (KUBECONFIG names it) and moto: objects to
create, a hand edit to revert and a canary to delete show as unified diffs with exit code 1; a converged
endpoint shows nothing with exit code 0; a missing record, a bad option or no cluster exit 2. Env
values never appear, yet a changed one shows. What the diff predicts for GCO's objects is checked
against the real cut-over in test_adoption.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from typer.testing import CliRunner

from gco_tasks.cli.main import app
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, converge, run_cycle

SECRET = "hunter2-never-printed"


@pytest.fixture()
def diff(fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("REDIS_URL", fleet.settings.redis_url)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, ["diff", *args])

    return run


def deploy(fleet: Fleet, **spec: Any) -> None:
    fields = {"image": "nginx:1.27", "gpu_count": 0, "env": {"TOKEN": SECRET}, **spec}
    fleet.store.create(Endpoint.new("demo", parse_spec(fields), [REGION]))


def test_new_endpoint_shows_what_would_be_created(fleet: Fleet, diff: Any) -> None:
    deploy(fleet)
    result = diff("demo", "--region", REGION)
    assert result.exit_code == 1, result.output
    for key in ("Deployment/demo", "Service/demo", "Ingress/inference-demo"):
        assert f"# create {key}\n" in result.output
        assert f"+++ next reconcile {key}" in result.output
    assert "+        image: nginx:1.27" in result.output
    assert SECRET not in result.output and "+          value: '***'" in result.output


def test_converged_endpoint_shows_nothing_and_a_hand_edit_shows_as_its_revert(
    fleet: Fleet, cluster: Cluster, diff: Any
) -> None:
    deploy(fleet, canary={"image": "nginx:1.28", "weight": 10})
    run_cycle(fleet)
    result = diff("demo", "--region", REGION)
    assert (result.exit_code, result.output) == (0, "# no difference: the next reconcile changes nothing\n")
    fleet.store.update_spec("demo", lambda spec: spec.with_changes(canary=None, env={"TOKEN": "rotated"}))
    hand = {"spec": {"replicas": 4}}
    client.AppsV1Api(cluster.api_client).patch_namespaced_deployment(
        "demo", "gco-inference", hand, field_manager="kubectl-edit"
    )
    result = diff("demo", "--region", REGION)
    assert result.exit_code == 1, result.output
    assert "# update Deployment/demo  (pod template changes: its pods restart)\n" in result.output
    assert "-  replicas: 4\n+  replicas: 1\n" in result.output
    for deleted in ("Deployment/demo-canary", "Service/demo-canary"):
        assert f"# delete {deleted}\n" in result.output
    lines = result.output.splitlines()
    assert "-          value: '***'" in lines and "+          value: '*** (changed)'" in lines
    assert SECRET not in result.output and "rotated" not in result.output
    run_cycle(fleet)
    after = diff("demo", "--region", REGION)
    assert after.exit_code == 0, after.output


def test_trouble_exits_2(fleet: Fleet, diff: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = diff("nobody", "--region", REGION)
    assert missing.exit_code == 2 and "not found" in missing.output
    assert diff().exit_code == 2  # no name: usage
    deploy(fleet)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    unreachable = diff("demo", "--region", REGION)
    assert unreachable.exit_code == 2 and "KUBECONFIG" in unreachable.output


# ---- diff --all: every endpoint of the region, a line each -------------------------------------------


def _create(fleet: Fleet, name: str, **spec: Any) -> None:
    fields = {"image": "nginx:1.27", "gpu_count": 0, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), [REGION]))


def test_all_summarises_each_endpoint_of_the_region(fleet: Fleet, cluster: Cluster, diff: Any) -> None:
    for name in ("in-sync", "scaled", "restarts", "going"):
        _create(fleet, name)
    run_cycle(fleet)
    _create(fleet, "brand-new")
    fleet.store.update_spec("scaled", lambda spec: spec.with_changes(replicas=3), desired_state=None)
    fleet.store.update_spec("restarts", lambda spec: spec.with_changes(image="nginx:1.28"))
    fleet.store.update_desired_state("going", "deleted")
    # An endpoint of another region is not this region's business.
    fleet.store.create(Endpoint.new("elsewhere", parse_spec({"image": "nginx:1.27"}), ["eu-west-1"]))

    result = diff("--all", "--region", REGION)
    assert result.exit_code == 1, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert lines == [
        "brand-new would change: create Deployment/brand-new, create Service/brand-new, "
        "create Ingress/inference-brand-new",
        "going would delete: delete Deployment/going, delete Service/going, delete Ingress/inference-going",
        "in-sync in sync",
        "restarts pods restart: update Deployment/restarts",
        "scaled would change: update Deployment/scaled",
    ], result.output

    as_json = json.loads(diff("--all", "--region", REGION, "-o", "json").output)
    by_name = {report["endpoint"]: report for report in as_json}
    assert by_name["restarts"]["changes"] == [
        {"verb": "update", "kind": "Deployment", "name": "restarts", "pods_restart": True}
    ]
    assert {name: report["summary"] for name, report in by_name.items()} == {
        "brand-new": "would change", "going": "would delete", "in-sync": "in sync",
        "restarts": "pods restart", "scaled": "would change",
    }  # fmt: skip

    converge(fleet, lambda: diff("--all", "--region", REGION).exit_code == 0)
    assert "in sync" in diff("--all", "--region", REGION).output


def test_all_reports_an_invalid_record_and_exits_2(fleet: Fleet, diff: Any) -> None:
    _create(fleet, "fine")
    fleet.store.client.put_item(
        TableName=fleet.store.table_name,
        Item={"endpoint_name": {"S": "broken"}, "target_regions": {"L": [{"S": REGION}]},
              "spec": {"M": {"replicas": {"N": "-2"}}}},
    )  # fmt: skip
    result = diff("--all", "--region", REGION)
    assert result.exit_code == 2, result.output
    assert "broken   error: " in result.output and "spec.image" in result.output
    assert "fine     would change: create Deployment/fine" in result.output
    assert diff("fine", "--all", "--region", REGION).exit_code == 2  # a name or --all, not both
