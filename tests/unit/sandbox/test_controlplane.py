"""The control plane launcher's pure parts: pinned versions (one file, shared with build.sh), finding the
binaries, the fake nodes, the command lines, the kubeconfig and the kwok Stages shipped beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from gco_sandbox.controlplane import (
    FAKE_NODES,
    ControlPlaneMissing,
    Ports,
    apiserver_argv,
    cache_root,
    controller_manager_argv,
    find_binaries,
    kubeconfig_text,
    kwok_argv,
    pinned_versions,
    stage_files,
    versions_file,
)
from gco_sandbox.pki import Pki
from gco_tasks.core.rendering.deployment import DEFAULT_NODE_SELECTOR
from gco_tasks.core.rendering.resources import ACCELERATOR_RESOURCE

REPO = Path(__file__).resolve().parents[3]


def test_versions_come_from_the_one_file_build_sh_reads() -> None:
    path = versions_file()
    assert path == REPO / "controlplane" / "versions.env"
    pinned = pinned_versions(path)
    assert (
        pinned.kubernetes.startswith("v1.")
        and pinned.etcd.startswith("v3.5.")
        and pinned.kwok.startswith("v0.")
    )
    shell = subprocess.run(
        ["bash", "-c", f"source {path}; echo $K8S_VERSION $ETCD_VERSION $KWOK_VERSION"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split() == [pinned.kubernetes, pinned.etcd, pinned.kwok]
    assert (
        'source "$(dirname "${BASH_SOURCE[0]}")/versions.env"'
        in (REPO / "controlplane" / "build.sh").read_text()
    )


def test_cache_root_follows_build_sh() -> None:
    assert cache_root({"GCO_CACHE_DIR": "/c"}) == Path("/c/controlplane")
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/gco-tasks/controlplane")
    assert cache_root({}) == Path.home() / ".cache" / "gco-tasks" / "controlplane"


def test_missing_binaries_say_to_run_make_controlplane(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneMissing, match=r"run `make controlplane`") as info:
        find_binaries(tmp_path)
    assert "kubernetes, etcd, kwok" in str(info.value)
    pinned = pinned_versions()
    for folder in (f"etcd-{pinned.etcd}", f"kwok-{pinned.kwok}"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / ".complete").touch()
    with pytest.raises(ControlPlaneMissing, match=r"\(kubernetes missing"):
        find_binaries(tmp_path)
    (tmp_path / f"kubernetes-{pinned.kubernetes}").mkdir()
    (tmp_path / f"kubernetes-{pinned.kubernetes}" / ".complete").touch()
    found = find_binaries(tmp_path)
    assert found.kubectl == tmp_path / f"kubernetes-{pinned.kubernetes}" / "bin" / "kubectl"


def test_fake_nodes_are_shaped_like_what_endpoints_select_and_tolerate() -> None:
    accelerators = {node.accelerator for node in FAKE_NODES}
    assert accelerators == {"nvidia", "neuron"}
    assert {node.capacity_type for node in FAKE_NODES if node.accelerator == "nvidia"} == {
        "on-demand",
        "spot",
    }
    for node in FAKE_NODES:
        manifest = node.manifest()
        labels = manifest["metadata"]["labels"]
        device = ACCELERATOR_RESOURCE[node.accelerator]
        assert DEFAULT_NODE_SELECTOR[node.accelerator].items() <= labels.items()
        assert labels["karpenter.sh/capacity-type"] == node.capacity_type
        assert labels["node.kubernetes.io/instance-type"] == node.instance_type
        assert manifest["spec"]["taints"] == [{"key": device, "value": "true", "effect": "NoSchedule"}]
        assert manifest["status"]["allocatable"][device] == str(node.devices) and node.devices > 0
        assert manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_command_lines_carry_what_the_tests_rely_on(tmp_path: Path) -> None:
    pki, ports, binary = Pki(tmp_path), Ports(1, 2, 3, 4), tmp_path / "bin"
    apiserver = apiserver_argv(binary, pki, ports, tmp_path)
    assert "--authorization-mode=Node,RBAC" in apiserver and "--bind-address=127.0.0.1" in apiserver
    assert "--enable-admission-plugins=NodeRestriction,ExtendedResourceToleration" in apiserver
    assert any(arg.startswith("--service-account-signing-key-file=") for arg in apiserver)
    assert f"--proxy-client-cert-file={pki.client_cert('front-proxy')}" in apiserver  # the metrics API's
    kcm = controller_manager_argv(binary, tmp_path / "k", pki)
    controllers = next(arg for arg in kcm if arg.startswith("--controllers=")).split("=")[1].split(",")
    for needed in (
        "deployment",
        "replicaset",
        "horizontal-pod-autoscaler",
        "garbage-collector",
        "node-lifecycle",
    ):
        assert f"{needed}-controller" in controllers
    assert "--leader-elect=false" in kcm
    kwok = kwok_argv(binary, tmp_path / "k", stage_files())
    assert sum(arg.startswith("--config=") for arg in kwok) == len(stage_files())


def test_kubeconfig_names_the_admin_certificate(tmp_path: Path) -> None:
    config = yaml.safe_load(kubeconfig_text("https://127.0.0.1:6443", Pki(tmp_path), "admin"))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"]["client-key"] == str(tmp_path / "admin.key")
    assert config["contexts"][0]["context"]["namespace"] == "gco-inference"


def test_kwok_stages_cover_the_pod_lifecycle_the_tests_steer() -> None:
    stages = {
        doc["metadata"]["name"]: doc for path in stage_files() for doc in yaml.safe_load_all(path.read_text())
    }
    assert set(stages) == {
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-delete",
        "pod-image-pull-backoff",
        "pod-crashloop",
    }
    assert all(stage["kind"] == "Stage" for stage in stages.values())
    ready_guards = [e["key"] for e in stages["pod-ready"]["spec"]["selector"]["matchExpressions"]]
    assert any("unpullable" in key and "crashloop" in key for key in ready_guards)
    for name, reason in (
        ("pod-image-pull-backoff", "ImagePullBackOff"),
        ("pod-crashloop", "CrashLoopBackOff"),
    ):
        guard = stages[name]["spec"]["selector"]["matchExpressions"][-1]
        assert guard["operator"] == "NotIn" and guard["values"] == [reason], (
            "without it kwok re-patches forever"
        )
