"""Procfile: the fleet under `honcho start`, each line run by /bin/sh as honcho runs it.

A stand-in `celery` on PATH records the argv and environment it gets, so the tests see exactly what a
real Celery would be started with, that `exec` makes it the process honcho signals, and that Flower
never starts without a login.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

from gco_tasks.config import load_settings

REPO = Path(__file__).resolve().parents[2]
PROCFILE = REPO / "Procfile"

RECORDER = f"""#!{sys.executable}
import json, os, sys
seen = {{"argv": sys.argv[1:], "pid": os.getpid(), "auth": os.environ.get("FLOWER_BASIC_AUTH")}}
seen["metrics"] = {{k: v for k, v in os.environ.items() if k in ("METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR")}}
json.dump(seen, sys.stdout)
"""


def _processes() -> dict[str, str]:
    return dict(parse_procfile(PROCFILE.read_text()).processes)


@pytest.fixture()
def fake_bin(tmp_path: Path) -> Path:
    celery = tmp_path / "celery"
    celery.write_text(RECORDER)
    celery.chmod(celery.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def _run(fake_bin: Path, process: str, **env: str) -> tuple[subprocess.CompletedProcess[str], int]:
    environ = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", **env}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", _processes()[process]],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_honcho_accepts_the_procfile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "honcho", "-f", str(PROCFILE), "check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "worker, beat, flower" in result.stderr


def test_procfile_has_the_three_processes_in_exec_form() -> None:
    processes = _processes()
    assert set(processes) == {"worker", "beat", "flower"}
    for name, command in processes.items():
        assert "exec celery -A gco_tasks " in command, f"{name}: celery must replace the shell"


@pytest.mark.parametrize(("region", "queue"), [("eu-west-1", "gco.eu-west-1"), (None, None)])
def test_worker_consumes_the_queue_of_REGION(fake_bin: Path, region: str | None, queue: str | None) -> None:
    env = {"REGION": region} if region else {}
    result, pid = _run(fake_bin, "worker", **env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    expected_queue = queue or load_settings({}).queue  # unset REGION: the same default as the app's
    assert seen["argv"] == [
        "-A", "gco_tasks", "worker", "-Q", expected_queue, "--loglevel", "INFO",
        "--without-mingle", "--without-gossip", "--concurrency", "4",
    ]  # fmt: skip
    assert seen["pid"] == pid, "exec: honcho's SIGTERM goes to celery itself, not to a shell"
    directory = f"/tmp/gco-tasks-metrics-{region or load_settings({}).region}"
    assert seen["metrics"] == {"PROMETHEUS_MULTIPROC_DIR": directory}, "its pool's values, per region"


def test_worker_keeps_a_given_metrics_directory(fake_bin: Path) -> None:
    result, _ = _run(fake_bin, "worker", PROMETHEUS_MULTIPROC_DIR="/var/tmp/m", METRICS_PORT="9900")
    assert json.loads(result.stdout)["metrics"] == {
        "PROMETHEUS_MULTIPROC_DIR": "/var/tmp/m",
        "METRICS_PORT": "9900",
    }


def test_beat_command(fake_bin: Path) -> None:
    result, pid = _run(fake_bin, "beat", REGION="us-east-1")
    assert json.loads(result.stdout) == {
        "argv": ["-A", "gco_tasks", "beat", "--loglevel", "INFO"],
        "pid": pid,
        "auth": None,
        "metrics": {"METRICS_PORT": "9809"},  # beside the worker's 9808 on one machine
    }
    result, _ = _run(fake_bin, "beat", BEAT_METRICS_PORT="0")
    assert json.loads(result.stdout)["metrics"] == {"METRICS_PORT": "0"}


def test_flower_refuses_to_start_without_a_login(fake_bin: Path) -> None:
    result, _ = _run(fake_bin, "flower")
    assert result.returncode != 0
    assert result.stdout == "", "celery must not have started"
    assert "FLOWER_BASIC_AUTH" in result.stderr

    result, pid = _run(fake_bin, "flower", FLOWER_BASIC_AUTH="ops:s3cret")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["-A", "gco_tasks", "flower", "--port=5555"]
    assert seen["auth"] == "ops:s3cret", "Flower reads the login from its environment, not argv"
    assert seen["pid"] == pid
