"""End to end with real processes: ``celery worker`` and ``celery beat`` (RedBeat) started as the
Procfile does, against a private redis-server, moto's DynamoDB over HTTP and the sandbox API server.
Twenty endpoints converge to ``running``; with beat stopped, ``celery call`` reconciles one ad hoc, and
the worker's log (``LOG_FORMAT`` unset) says so in Celery's readable text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from gco_sandbox.services import SANDBOX_AWS_ENV
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, parse_spec

REGION = "us-east-1"
CELERY = [sys.executable, "-m", "celery", "-A", "gco_tasks"]


@pytest.fixture()
def fleet_env(redis_url: str, dynamodb_url: str, apiserver: Any, tmp_path: Path) -> dict[str, str]:
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig.yaml")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBE", "REDIS"))}
    env.update(SANDBOX_AWS_ENV)
    env.update(
        REGION=REGION,
        REDIS_URL=redis_url,
        KUBECONFIG=str(kubeconfig),
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_url,
        RECONCILE_INTERVAL_SECONDS="2",
        WATCHDOG_INTERVAL_SECONDS="5",
        WORKER_HEARTBEAT_FILE=str(tmp_path / "worker.heartbeat"),
    )
    return env


@pytest.fixture()
def store(fleet_env: dict[str, str]) -> EndpointStore:
    built = EndpointStore.from_settings(load_settings(fleet_env))
    built.create_table()
    return built


class Processes:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.running[name] = subprocess.Popen(
            [*CELERY, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture()
def processes(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(fleet_env, tmp_path)
    yield procs
    procs.stop_all()


def states(store: EndpointStore) -> dict[str, str | None]:
    return {
        item["endpoint_name"]: (item.get("region_status", {}).get(REGION) or {}).get("state")
        for item in store.scan_items()
    }


def test_worker_and_beat_converge_twenty_endpoints_then_call_reconciles_one(
    store: EndpointStore, processes: Processes, fleet_env: dict[str, str]
) -> None:
    names = [f"llm-{i:02d}" for i in range(20)]
    for name in names:
        store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27"}), [REGION]))
    processes.start(
        "worker",
        "worker",
        "-Q",
        f"gco.{REGION}",
        "-c",
        "2",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    )
    processes.start("beat", "beat", "-l", "INFO")

    deadline = time.monotonic() + 90
    while not all(state == "running" for state in states(store).values()):
        assert time.monotonic() < deadline, (states(store), processes.log("worker"), processes.log("beat"))
        time.sleep(1)
    assert all(store.get(name).desired_state == "running" for name in names)
    heartbeat = Path(fleet_env["WORKER_HEARTBEAT_FILE"])
    assert heartbeat.exists() and time.time() - heartbeat.stat().st_mtime < 30

    processes.stop("beat")
    store.create(Endpoint.new("adhoc", parse_spec({"image": "nginx:1.27"}), [REGION]))
    call = subprocess.run(
        [*CELERY, "call", "gco_tasks.reconcile_endpoint", "--args", '["adhoc"]', "--queue", f"gco.{REGION}"],
        env=fleet_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert call.returncode == 0, call.stderr
    # The call's own result, not a state read at some moment: a fan-out still queued when beat stopped may
    # reconcile the endpoint too, and the sandbox marks it ready 0.2 s after creation.
    task_id = call.stdout.strip().splitlines()[-1]
    results = Celery(broker=fleet_env["REDIS_URL"], backend=fleet_env["REDIS_URL"], set_as_current=False)
    try:
        result = AsyncResult(task_id, app=results).get(timeout=30)
    finally:
        results.close()
    assert result["endpoint"] == "adhoc" and result["state"] in {"creating", "running"}, result
    deadline = time.monotonic() + 30
    while states(store).get("adhoc") not in {"creating", "running"}:
        assert time.monotonic() < deadline, processes.log("worker")
        time.sleep(0.5)

    def logged() -> str | None:  # LOG_FORMAT unset: Celery's readable text, our context on the line
        text = (processes.logs / "worker.log").read_text(errors="replace")
        # whichever reconcile applied it: the ad hoc call or a fan-out still queued when beat stopped
        return next((line for line in text.splitlines() if "reconciled adhoc: applied (" in line), None)

    deadline = time.monotonic() + 30
    while (line := logged()) is None:
        assert time.monotonic() < deadline, processes.log("worker")
        time.sleep(0.2)
    assert line.startswith("[") and "INFO/ForkPoolWorker" in line and "apply Deployment/adhoc" in line, line
    assert not [row for row in processes.log("worker").splitlines() if row.startswith("{")], "no JSON"
