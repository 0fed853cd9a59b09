"""k8s/components/keda: workers scaled by KEDA on the length of the region's queue, validated with KEDA's
own CRDs on the real API server.

KEDA's CRD YAML (config/crd/bases) ships in its Go module, fetched through the Go module proxy at a
pinned version whose checksum (go.sum's h1: hash, checked by Go against the checksum database) is pinned
here too. The CRDs are applied to the real control plane and the rendered example
(k8s/examples/us-east-1-with-keda) is created with --dry-run=server (strict field validation): the API
server checks every field against KEDA's schema, and rejects a wrong type or an unknown field. The Redis
scaler's metadata keys are checked against the `keda:"name=..."` tags of KEDA's scaler source.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gco_sandbox.controlplane import ControlPlane
from gco_tasks.core.conventions import queue_for_region

from .test_k8s_manifests import Region, _kubectl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "k8s" / "examples" / "us-east-1-with-keda"
#: KEDA's Go module at the version the component is written for, and its go.sum hash.
KEDA_MODULE, KEDA_VERSION = "github.com/kedacore/keda/v2", "v2.20.2"
KEDA_SUM = "h1:SR60v8uIcelbveS8n/1jcl8tLdBBIbHMxmdOHw8tKqA="
CRDS = ("keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml")

Obj = dict[str, Any]


@functools.cache
def keda_module() -> Path:
    """KEDA's module directory in the Go module cache (downloaded once through the module proxy)."""
    go = shutil.which("go")
    if go is None:
        pytest.fail(
            "Go is required (it fetches KEDA's CRDs from its Go module): install Go 1.26", pytrace=False
        )
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{KEDA_MODULE}@{KEDA_VERSION}"],
        capture_output=True, text=True, timeout=600, env=env, cwd=Path.home(),
    )  # fmt: skip
    info = json.loads(result.stdout or "{}")
    assert result.returncode == 0 and "Error" not in info, result.stdout + result.stderr
    assert info["Sum"] == KEDA_SUM, f"{KEDA_MODULE}@{KEDA_VERSION} is not the module this test pins"
    return Path(info["Dir"])


@functools.cache
def rendered() -> tuple[Obj, ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def _one(kind: str) -> Obj:
    (found,) = [obj for obj in rendered() if obj["kind"] == kind]
    return found


# --------------------------------------------------------------------------------------------------
# What the component renders into the overlay
# --------------------------------------------------------------------------------------------------


def test_the_scaled_object_scales_the_worker_on_its_regions_queue() -> None:
    scaled, plain = _one("ScaledObject"), Region("us-east-1")
    assert scaled["metadata"]["namespace"] == "gco-system"
    assert scaled["spec"]["scaleTargetRef"] == {"name": "gco-tasks-worker"}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    # The list the worker consumes (its -Q), the overlay's REGION substituted.
    assert (
        trigger["metadata"]["listName"] == queue_for_region(plain.config["data"]["REGION"]) == "gco.us-east-1"
    )
    args = plain.container("worker")["args"]
    assert args[args.index("-Q") + 1] == "gco.$(REGION)"
    assert trigger["authenticationRef"] == {"name": _one("TriggerAuthentication")["metadata"]["name"]}


def test_keda_owns_the_worker_replicas_within_the_sizing_tables_bounds() -> None:
    scaled, plain = _one("ScaledObject")["spec"], Region("us-east-1")
    workers = [
        obj
        for obj in rendered()
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "gco-tasks-worker"
    ]
    (worker,) = workers
    assert "replicas" not in worker["spec"], "kubectl apply must not reset what KEDA's HPA set"
    # The Sizing table (docs/production.md): 2 x 4 by default, up to 4 x 4; 2 keeps one worker up through
    # a drain that the PodDisruptionBudget allows.
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 4)
    assert scaled["minReplicaCount"] == plain.deployment("worker")["spec"]["replicas"]
    (pdb,) = [p for p in plain.of_kind("PodDisruptionBudget") if p["metadata"]["name"] == "gco-tasks-worker"]
    assert scaled["minReplicaCount"] > pdb["spec"]["minAvailable"]
    # Everything else of the overlay is unchanged.
    others = {(o["kind"], o["metadata"]["name"]) for o in rendered()} - {
        ("ScaledObject", "gco-tasks-worker"), ("TriggerAuthentication", "gco-tasks-keda-redis")
    }  # fmt: skip
    assert others == {(o["kind"], o["metadata"]["name"]) for o in plain.objects}


def _scaler_keys(source: str, order: str) -> set[str]:
    """The names a KEDA scaler reads from ``order`` (triggerMetadata or authParams), from its tags."""
    keys = set()
    for tag in re.findall(r'keda:"([^"]*)"', source):
        fields = dict(part.strip().split("=", 1) for part in tag.split(",") if "=" in part)
        if order in fields.get("order", "").split(";"):
            keys |= set(fields["name"].split(";"))
    return keys


def test_the_trigger_uses_only_what_kedas_redis_scaler_reads() -> None:
    source = (keda_module() / "pkg" / "scalers" / "redis_scaler.go").read_text()
    (trigger,) = _one("ScaledObject")["spec"]["triggers"]
    assert set(trigger["metadata"]) <= _scaler_keys(source, "triggerMetadata"), trigger["metadata"]
    params = {ref["parameter"] for ref in _one("TriggerAuthentication")["spec"]["secretTargetRef"]}
    assert params == {"address", "password"} <= _scaler_keys(source, "authParams")
    # ElastiCache in transit encryption: the fleet's REDIS_URL is rediss://, so is KEDA's connection.
    assert trigger["metadata"]["enableTLS"] == "true"


# --------------------------------------------------------------------------------------------------
# KEDA's CRDs on the real API server
# --------------------------------------------------------------------------------------------------


def _kubectl_on(
    plane: ControlPlane, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(plane.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig), *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def keda_crds(real_cluster: ControlPlane) -> Iterator[ControlPlane]:
    files = [str(keda_module() / "config" / "crd" / "bases" / name) for name in CRDS]
    args = [arg for name in files for arg in ("-f", name)]
    applied = _kubectl_on(real_cluster, "apply", "--server-side", *args)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    established = _kubectl_on(real_cluster, "wait", "--for=condition=Established", "--timeout=60s", *args)
    assert established.returncode == 0, established.stdout + established.stderr
    yield real_cluster
    _kubectl_on(real_cluster, "delete", "--wait=false", *args)


def _dry_run(plane: ControlPlane, objects: list[Obj]) -> subprocess.CompletedProcess[str]:
    return _kubectl_on(
        plane, "create", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump_all(objects)
    )


def test_the_component_passes_kedas_crd_schemas_on_the_real_server(keda_crds: ControlPlane) -> None:
    objects = [_one("ScaledObject"), _one("TriggerAuthentication")]
    result = _dry_run(keda_crds, objects)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scaledobject.keda.sh/gco-tasks-worker created (server dry run)" in result.stdout


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("spec", "minReplicaCount"), "two", "minReplicaCount"),
        (("spec", "triggers", 0, "metadata", "listLength"), 100, "listLength"),
        (("spec", "minReplicas"), 2, 'unknown field "spec.minReplicas"'),
    ],
)
def test_the_real_server_rejects_what_kedas_schema_forbids(
    keda_crds: ControlPlane, path: tuple[Any, ...], value: Any, says: str
) -> None:
    """The schema is in force: the same object with one wrong field is refused, naming it."""
    broken = json.loads(json.dumps(_one("ScaledObject")))
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    result = _dry_run(keda_crds, [broken])
    assert result.returncode != 0, result.stdout
    assert says in result.stderr, result.stderr
