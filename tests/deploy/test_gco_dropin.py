"""k8s/gco/32-inference-monitor.yaml, the drop-in for GCO's manifest of the same name: rendered from
k8s/gco/source (and up to date with it), holding only {{PLACEHOLDER}}s GCO's regional stack fills, and,
filled as GCO's kubectl-applier fills them (a plain text replacement of each ``{{KEY}}``), accepted by the
real API server (``kubectl apply --dry-run=server``, strict field validation) as a fleet that runs under
GCO's monitor identity, on GCO's Valkey, with GCO's monitor stopped."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from gco_sandbox.controlplane import ControlPlane
from gco_tasks.core.config import load_settings

from .test_k8s_manifests import Region, _kubectl

REPO = Path(__file__).resolve().parents[2]
DROP_IN = REPO / "k8s" / "gco" / "32-inference-monitor.yaml"
#: What GCO's regional stack passes its kubectl-applier (the Valkey pair only with Valkey enabled), as
#: filled here; a key outside this set would make the applier skip the whole file.
FILLED = {
    "{{REGION}}": "us-east-1",
    "{{CLUSTER_NAME}}": "gco-us-east-1",
    "{{DYNAMODB_REGION}}": "us-east-2",
    "{{INFERENCE_MONITOR_IMAGE}}": "111122223333.dkr.ecr.us-east-1.amazonaws.com/gco-inference-monitor:1.2",
    "{{SERVICE_ACCOUNT_ROLE_ARN}}": "arn:aws:iam::111122223333:role/gco-us-east-1-sa",
    "{{VALKEY_ENDPOINT}}": "gco-valkey-abc.serverless.use1.cache.amazonaws.com",
    "{{VALKEY_PORT}}": "6379",
}
GCO_MONITOR_SA = "gco-inference-monitor-sa"

Obj = dict[str, Any]


def filled_text() -> str:
    """The file as GCO's applier makes it: each known ``{{KEY}}`` replaced by its value."""
    text = DROP_IN.read_text()
    for key, value in FILLED.items():
        text = text.replace(key, value)
    return text


def objects() -> dict[tuple[str, str], Obj]:
    docs = [doc for doc in yaml.safe_load_all(filled_text()) if doc]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def _env(container: Obj) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container.get("env", [])}


def test_the_drop_in_is_rendered_from_its_source() -> None:
    """k8s/gco/render.sh's output is what is committed (k8s/base changed: run it again)."""
    env = {**os.environ, "KUBECTL": _kubectl()}
    before = DROP_IN.read_text()
    try:
        result = subprocess.run(
            [str(REPO / "k8s" / "gco" / "render.sh")], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert DROP_IN.read_text() == before, (
            "k8s/gco/32-inference-monitor.yaml is stale: run k8s/gco/render.sh"
        )
    finally:
        DROP_IN.write_text(before)


def test_only_placeholders_gcos_stack_fills_and_none_left_after() -> None:
    used = set(re.findall(r"\{\{[A-Z_]+\}\}", DROP_IN.read_text()))
    assert used == set(FILLED), used ^ set(FILLED)
    text = filled_text()
    assert "{{" not in text and "}}" not in text, "GCO's applier would skip the file"


def test_filled_it_is_the_fleet_under_gcos_identity_on_gcos_valkey() -> None:
    found, plain = objects(), Region("us-east-1")
    (config,) = [obj for (kind, _), obj in found.items() if kind == "ConfigMap"]
    assert {k: config["data"][k] for k in ("REGION", "CLUSTER_NAME", "DYNAMODB_REGION")} == {
        "REGION": "us-east-1", "CLUSTER_NAME": "gco-us-east-1", "DYNAMODB_REGION": "us-east-2"
    }  # fmt: skip
    assert config["data"]["INFERENCE_ENDPOINTS_TABLE_NAME"] == "gco-inference-endpoints"  # GCO's literal
    worker = found[("Deployment", "gco-tasks-worker")]["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == GCO_MONITOR_SA
    (container,) = worker["containers"]
    env = _env(container)
    assert container["image"] == FILLED["{{INFERENCE_MONITOR_IMAGE}}"]
    assert env["REDIS_URL"] == "rediss://gco-valkey-abc.serverless.use1.cache.amazonaws.com:6379/0"
    assert env["AWS_ROLE_ARN"] == FILLED["{{SERVICE_ACCOUNT_ROLE_ARN}}"]
    settings = load_settings({}, region=config["data"]["REGION"], redis_url=env["REDIS_URL"])
    assert settings.redis_target.ssl_options() == {"ssl_cert_reqs": "required"}, "TLS, certificate verified"
    beat = found[("Deployment", "gco-tasks-beat")]["spec"]["template"]["spec"]["containers"][0]
    assert _env(beat)["REDIS_URL"] == env["REDIS_URL"]
    (subject,) = found[("RoleBinding", "gco-tasks")]["subjects"]
    assert (subject["name"], subject["namespace"]) == (GCO_MONITOR_SA, "gco-system")
    # The overlay's objects but Flower (its login Secret is not the applier's) and our ServiceAccount
    # (GCO's applier creates the monitor's), plus GCO's monitor at 0 replicas.
    ours = {
        (o["kind"], o["metadata"]["name"]) for o in plain.objects if "flower" not in o["metadata"]["name"]
    }
    ours -= {("ServiceAccount", "gco-tasks")}
    ours = {key for key in ours if key[0] != "ConfigMap"}
    assert {key for key in found if key[0] != "ConfigMap"} == ours | {("Deployment", "inference-monitor")}
    monitor = found[("Deployment", "inference-monitor")]["spec"]
    assert monitor["replicas"] == 0 and monitor["selector"] == {"matchLabels": {"app": "inference-monitor"}}


def test_filled_the_real_api_server_accepts_it(real_cluster: ControlPlane) -> None:
    plane = real_cluster
    command = [str(plane.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig)]
    result = subprocess.run(
        [*command, "apply", "--dry-run=server", "--validate=strict", "-f", "-"],
        input=filled_text(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deployment.apps/gco-tasks-worker created (server dry run)" in result.stdout, result.stdout
    assert "deployment.apps/inference-monitor created (server dry run)" in result.stdout, result.stdout
