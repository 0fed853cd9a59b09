"""End to end: ``gco-tasks sandbox`` as a user runs it, from a shell with nothing else running.

One sandbox (``--env-file F --no-live --interval 2``) serves the issue's must-show: after reading F as
``source`` would, ``gco-tasks endpoints deploy x -i nginx:1.27 -r us-east-1`` is ``running`` within 15 s,
Flower's ``/api/workers`` lists the worker with the printed login (401 without), ``celery call`` reaches
the worker and the examples converge. Those tests only read from it or add their own endpoint, so they
pass in any order. Lighter runs, each with a sandbox of its own, check that SIGINT stops every process
within 10 s, SIGTERM with two regions, and that a child dying takes the sandbox down with exit code 1 and
its log.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gco_sandbox.children import PIDS_FILE, group_members
from tests.support.bounds import generous

GCO_TASKS = str(Path(sys.executable).with_name("gco-tasks"))
REPO_ROOT = Path(__file__).resolve().parents[2]
CELERY = [sys.executable, "-m", "celery", "-A", "gco_tasks"]
QUEUE = "gco.us-east-1"
READY_TIMEOUT = 60.0
pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftovers through /proc")


@dataclass
class Sandbox:
    process: subprocess.Popen[bytes]
    state_dir: Path
    env_file: Path
    output: Path

    def out(self) -> str:
        return self.output.read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.state_dir.glob("*.log")
        )

    def pids(self) -> dict[str, int]:
        loaded: dict[str, int] = json.loads((self.state_dir / PIDS_FILE).read_text())
        return loaded

    def env(self) -> dict[str, str]:
        """The env file read the way ``source`` reads it: by a shell."""
        shell = subprocess.run(
            ["bash", "-c", f"set -a; source {self.env_file}; env -0"],
            env={"PATH": os.environ["PATH"]},
            capture_output=True,
            check=True,
        )
        pairs = (entry.split("=", 1) for entry in shell.stdout.decode().split("\0") if "=" in entry)
        return {**_clean_environ(), **dict(pairs)}

    def wait_ready(self) -> float:
        started = time.monotonic()
        while not self.env_file.exists():
            code = self.process.poll()
            assert code is None, f"sandbox exited {code}:\n{self.out()}\n{self.logs()}"
            assert time.monotonic() - started < READY_TIMEOUT, f"not ready:\n{self.out()}\n{self.logs()}"
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self, signum: int, timeout: float = 10.0) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started


def _clean_environ() -> dict[str, str]:
    """This test process's environment without anything another fixture may have pointed elsewhere."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "KUBE", "REDIS", "FLOWER", "REGION", "DYNAMODB"))
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sandbox(tmp: Path, *args: str) -> Sandbox:
    """A sandbox with its own Flower port: never 5555, which another sandbox on the machine may hold."""
    state_dir, env_file, output = tmp / "state", tmp / "sandbox.env", tmp / "sandbox.out"
    port = ("--flower-port", str(_free_port()))
    with output.open("wb") as out:
        process = subprocess.Popen(
            [GCO_TASKS, "sandbox", "--env-file", str(env_file), "--state-dir", str(state_dir), *port, *args],
            env=_clean_environ(),
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Sandbox(process, state_dir, env_file, output)


def kill_leftovers(sandbox: Sandbox) -> None:
    if sandbox.process.poll() is None:
        os.killpg(sandbox.process.pid, signal.SIGKILL)
        sandbox.process.wait()
    if (sandbox.state_dir / PIDS_FILE).exists():
        for pid in sandbox.pids().values():
            for member in group_members(pid):
                os.kill(member, signal.SIGKILL)


def leftovers(sandbox: Sandbox) -> dict[str, list[int]]:
    """Processes still alive in the process group of any child the sandbox started."""
    alive = {name: group_members(pid) for name, pid in sandbox.pids().items()}
    return {name: pids for name, pids in alive.items() if pids}


def gco(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GCO_TASKS, *args], env=env, capture_output=True, text=True, timeout=30)


def region_state(env: dict[str, str], name: str, region: str = "us-east-1") -> str | None:
    result = gco(env, "endpoints", "status", name, "--json")
    if result.returncode != 0:
        return None
    status = json.loads(result.stdout).get("region_status", {}).get(region) or {}
    return status.get("state")


def flower(env: dict[str, str], path: str, login: str | None) -> tuple[int, Any]:
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
    request = urllib.request.Request(env["FLOWER_URL"] + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            kind = response.headers.get("Content-Type", "")
            return response.status, json.loads(body) if "json" in kind else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, None


# --------------------------------------------------------------------------------------------------
# One sandbox for the tests below, in any order; none of them stops it.
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), "--no-live", "--interval", "2")
    try:
        seconds = running.wait_ready()
        print(f"sandbox ready in {seconds:.1f}s")
        yield running
    finally:
        kill_leftovers(running)


@pytest.fixture(scope="module")
def env(sandbox: Sandbox) -> dict[str, str]:
    return sandbox.env()


def test_env_file_has_what_another_shell_needs(sandbox: Sandbox, env: dict[str, str]) -> None:
    for key in (
        "REDIS_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "KUBECONFIG",
        "INFERENCE_ENDPOINTS_TABLE_NAME",
        "FLOWER_URL",
    ):
        assert env.get(key), key
    assert env["REGION"] == "us-east-1"
    assert Path(env["KUBECONFIG"]).is_file()
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
    assert user and len(password) >= 12
    out = sandbox.out()
    assert "sandbox ready in" in out and password in out and str(sandbox.state_dir) in out


def test_deployed_endpoint_is_running_within_15s(env: dict[str, str]) -> None:
    deploy = gco(env, "endpoints", "deploy", "x", "-i", "nginx:1.27", "-r", "us-east-1")
    assert deploy.returncode == 0, deploy.stderr
    started = time.monotonic()
    bound = generous(15)  # the README's 15 s, on a shared machine (tests/support/bounds.py)
    while (state := region_state(env, "x")) != "running":
        assert time.monotonic() - started < bound, f"x is {state} after {bound:.0f} s"
        time.sleep(0.5)
    print(f"x running {time.monotonic() - started:.1f}s after deploy")


def test_flower_lists_the_worker_with_the_printed_login_only(env: dict[str, str]) -> None:
    status, workers = flower(env, "/api/workers", env["FLOWER_BASIC_AUTH"])
    assert status == 200
    assert [name for name in workers if name.startswith("us-east-1@")], workers
    assert flower(env, "/api/workers", None)[0] == 401
    assert flower(env, "/api/workers", "gco:wrong")[0] == 401
    status, metrics = flower(env, "/metrics", env["FLOWER_BASIC_AUTH"])
    assert status == 200 and "flower_worker_online" in metrics


def test_celery_call_from_another_shell_reaches_the_worker(env: dict[str, str]) -> None:
    call = subprocess.run(
        [*CELERY, "call", "gco_tasks.reconcile_endpoint", "--args", '["example-web"]', "--queue", QUEUE],
        env=env,
        cwd=REPO_ROOT,  # as a user of a clone does (and a venv installed before the package existed needs)
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert call.returncode == 0, call.stderr
    task_id = call.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 15
    while True:
        status, info = flower(env, f"/api/task/info/{task_id}", env["FLOWER_BASIC_AUTH"])
        if status == 200 and info.get("state") == "SUCCESS":
            break
        assert time.monotonic() < deadline, (status, info)
        time.sleep(0.5)


def test_examples_reach_running_and_changes_are_printed(sandbox: Sandbox, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 20
    while {region_state(env, "example-web"), region_state(env, "example-llm")} != {"running"}:
        assert time.monotonic() < deadline, sandbox.out()
        time.sleep(0.5)
    status = json.loads(gco(env, "endpoints", "status", "example-llm", "--json").stdout)
    assert status["spec"]["canary"]["weight"] == 20
    deadline = time.monotonic() + 5
    while "example-llm [us-east-1]: running" not in sandbox.out():
        assert time.monotonic() < deadline, sandbox.out()
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------------
# Lighter runs, each with its own sandbox
# --------------------------------------------------------------------------------------------------


def test_sigint_stops_every_process_within_10s(tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path, "--no-live")
    try:
        sandbox.wait_ready()
        pids = sandbox.pids()
        assert {"redis", "worker-us-east-1", "beat-us-east-1", "flower"} <= set(pids)
        assert not set(leftovers(sandbox)) ^ set(pids), "every child runs before the stop"
        code, seconds = sandbox.stop(signal.SIGINT)
        print(f"stopped in {seconds:.1f}s")
        assert code == 0, sandbox.out()
        assert seconds < generous(10)  # the claim is 10 s (printed above); a shared machine is slower
        assert leftovers(sandbox) == {}
        assert "sandbox stopped" in sandbox.out()
        assert f"{sandbox.env_file} is kept but marked stale" in sandbox.out()
        sourced = subprocess.run(
            ["bash", "-c", f'source {sandbox.env_file}; echo "code=$? redis=${{REDIS_URL:-unset}}"'],
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert sourced.stdout.strip() == "code=1 redis=unset", "a stale env file changes nothing"
        assert "this environment is stale" in sourced.stderr
    finally:
        kill_leftovers(sandbox)


def deployments(kubeconfig: str) -> dict[str, str]:
    """Deployment name -> uid in gco-inference of the cluster ``kubeconfig`` points at."""
    from kubernetes import client, config

    with config.new_client_from_config(config_file=kubeconfig) as api:
        found = client.AppsV1Api(api).list_namespaced_deployment("gco-inference", _request_timeout=10)
    return {item.metadata.name: item.metadata.uid for item in found.items}


def test_two_regions_each_have_their_own_cluster_and_never_touch_the_other(tmp_path: Path) -> None:
    sandbox = start_sandbox(
        tmp_path, "--empty", "--no-live", "--interval", "1", "--region", "us-east-1", "--region", "eu-west-1"
    )
    try:
        sandbox.wait_ready()
        env = sandbox.env()
        _, workers = flower(env, "/api/workers", env["FLOWER_BASIC_AUTH"])
        assert {name.split("@")[0] for name in workers} == {"us-east-1", "eu-west-1"}
        assert {"worker-eu-west-1", "beat-eu-west-1"} <= set(sandbox.pids())
        listed = gco(env, "endpoints", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == [], "an empty table lists as [], never as nothing"
        us, eu = env["KUBECONFIG_US_EAST_1"], env["KUBECONFIG_EU_WEST_1"]
        assert us != eu and env["KUBECONFIG"] == us
        assert (
            gco(env, "endpoints", "deploy", "east-only", "-i", "nginx:1.27", "-r", "us-east-1").returncode
            == 0
        )
        both = gco(
            env, "endpoints", "deploy", "both", "-i", "nginx:1.27", "-r", "us-east-1", "-r", "eu-west-1"
        )
        assert both.returncode == 0, both.stderr
        deadline = time.monotonic() + 20
        while not (
            region_state(env, "east-only") == "running"
            and region_state(env, "both") == "running"
            and region_state(env, "both", "eu-west-1") == "running"
        ):
            assert "east-only" not in deployments(eu), "eu-west-1's cluster never gets it"
            assert time.monotonic() < deadline, sandbox.out()
            time.sleep(0.3)
        east = deployments(us)
        assert set(east) == {"east-only", "both"} and set(deployments(eu)) == {"both"}
        settle = time.monotonic() + 4  # four of eu-west-1's cycles: it must not delete us-east-1's objects
        while time.monotonic() < settle:
            assert deployments(us) == east, "same objects, same uids: nothing deleted and re-created"
            assert "east-only" not in deployments(eu)
            time.sleep(0.5)
        code, seconds = sandbox.stop(signal.SIGTERM)
        assert code == 0 and seconds < 10, sandbox.out()
        assert leftovers(sandbox) == {}
        assert "endpoints by region" not in sandbox.out(), "not a terminal: change lines, no live table"
    finally:
        kill_leftovers(sandbox)


def test_a_child_dying_is_reported_and_stops_everything(tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path, "--empty", "--no-live")
    try:
        sandbox.wait_ready()
        os.killpg(sandbox.pids()["beat-us-east-1"], signal.SIGKILL)
        code = sandbox.process.wait(timeout=15)
        out = sandbox.out()
        assert code == 1, out
        assert "beat-us-east-1" in out and "exited with code -9" in out and "beat-us-east-1.log" in out
        assert "beat: Starting" in out or "Scheduler" in out, "the log tail is shown"
        assert leftovers(sandbox) == {}
    finally:
        kill_leftovers(sandbox)
