"""End to end: ``gco-tasks sandbox --cluster real``, the whole fleet against the real control plane.

As a user runs it: ready with the kubectl command that watches the pods printed; an endpoint deployed
from another shell reaches ``running`` with its pod Ready on a fake GPU node (seen through that very
kubectl); SIGINT stops every process, the control plane's included.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gco_sandbox.children import group_members
from gco_sandbox.controlplane import FAKE_NODES, ControlPlaneMissing, find_binaries
from tests.e2e.test_sandbox import Sandbox, gco, kill_leftovers, leftovers, region_state, start_sandbox

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftovers through /proc")


def plane_dir(sandbox: Sandbox, region: str = "us-east-1") -> Path:
    """Each region's control plane lives under ``<state dir>/<region>/controlplane``."""
    return sandbox.state_dir / region / "controlplane"


def control_plane_pids(sandbox: Sandbox) -> dict[str, int]:
    loaded: dict[str, int] = json.loads((plane_dir(sandbox) / "pids.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    try:
        find_binaries()
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    running = start_sandbox(
        tmp_path_factory.mktemp("sandbox-real"), "--cluster", "real", "--no-live", "--interval", "2"
    )
    try:
        print(f"sandbox on the real control plane ready in {running.wait_ready():.1f}s")
        yield running
    finally:
        kill_leftovers(running)
        if (plane_dir(running) / "pids.json").exists():
            for pid in control_plane_pids(running).values():
                for member in group_members(pid):
                    os.kill(member, signal.SIGKILL)


def watch_command(sandbox: Sandbox) -> list[str]:
    """The printed ``kubectl ... get pods -n gco-inference -w``, without ``-w``."""
    match = re.search(r"Watch the pods of us-east-1: (.+ get pods -n gco-inference) -w", sandbox.out())
    assert match, sandbox.out()
    return shlex.split(match.group(1))


def test_an_endpoint_reaches_running_on_a_fake_gpu_node(sandbox: Sandbox) -> None:
    env = sandbox.env()
    deploy = gco(env, "endpoints", "deploy", "x", "-i", "vllm/vllm-openai:v0.6.3", "-r", "us-east-1")
    assert deploy.returncode == 0, deploy.stderr
    deadline = time.monotonic() + 60
    while (state := region_state(env, "x")) != "running":
        assert time.monotonic() < deadline, f"x is {state} after 60 s\n{sandbox.out()}"
        time.sleep(0.5)
    pods = subprocess.run(
        [*watch_command(sandbox), "-l", "app=x", "-o", "json"], capture_output=True, text=True, timeout=30
    )
    assert pods.returncode == 0, pods.stderr
    (pod,) = json.loads(pods.stdout)["items"]
    gpu_nodes = {node.name for node in FAKE_NODES if node.accelerator == "nvidia"}
    assert pod["spec"]["nodeName"] in gpu_nodes
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"


def test_sigint_stops_the_fleet_and_the_control_plane(sandbox: Sandbox) -> None:
    components = control_plane_pids(sandbox)
    expected = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "metrics-api"}
    assert set(components) == expected
    assert all(group_members(pid) for pid in components.values()), "every component runs before the stop"
    code, seconds = sandbox.stop(signal.SIGINT, timeout=40)
    print(f"stopped in {seconds:.1f}s")
    assert code == 0, sandbox.out()
    assert leftovers(sandbox) == {}
    assert {name: group_members(pid) for name, pid in components.items() if group_members(pid)} == {}
