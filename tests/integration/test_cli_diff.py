"""`gco-tasks diff NAME --region R` against each API server (KUBECONFIG names it) and moto: objects to
create, a hand edit to revert and a canary to delete show as unified diffs with exit code 1; a converged
endpoint shows nothing with exit code 0; a missing record, a bad option or no cluster exit 2. Env
values never appear, yet a changed one shows. What the diff predicts for GCO's objects is checked
against the real cut-over in test_adoption.py."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from typer.testing import CliRunner

from gco_tasks.cli.main import app
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, run_cycle

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
