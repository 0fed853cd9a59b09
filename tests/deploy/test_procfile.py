"""Procfile: the fleet under `honcho start`, each line run by /bin/sh as honcho runs it.

A stand-in `celery` (and `python`) on PATH records the argv and environment it gets, so the tests see
exactly what a real Celery would be started with, and that `exec` makes it the process honcho signals.
Flower's line runs the real login guard (`python -m gco_tasks.flower`): without a well-formed login it
exits before Flower starts; with one it execs Flower on 127.0.0.1.
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

REPO = Path(__file__).resolve().parents[2]
PROCFILE = REPO / "Procfile"
LOGIN = "ops:a-long-random-password"

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
    for name in ("celery", "python"):
        fake = tmp_path / name
        fake.write_text(RECORDER)
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return tmp_path


@pytest.fixture()
def venv_bin(tmp_path: Path) -> Path:
    """The test's own interpreter as `python`, first on PATH (as an activated venv puts it)."""
    (tmp_path / "python").symlink_to(sys.executable)
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
    for name in ("worker", "beat"):
        assert "exec celery -A gco_tasks " in processes[name], f"{name}: celery must replace the shell"
    assert processes["flower"].startswith("exec python -m gco_tasks.flower "), "the guard replaces the shell"


def test_worker_consumes_the_queue_of_REGION(fake_bin: Path) -> None:
    result, pid = _run(fake_bin, "worker", REGION="eu-west-1")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == [
        "-A", "gco_tasks", "worker", "-Q", "gco.eu-west-1", "--loglevel", "INFO",
        "--without-mingle", "--without-gossip", "--concurrency", "4",
    ]  # fmt: skip
    assert seen["pid"] == pid, "exec: honcho's SIGTERM goes to celery itself, not to a shell"
    directory = "/tmp/gco-tasks-metrics-eu-west-1"
    assert seen["metrics"] == {"PROMETHEUS_MULTIPROC_DIR": directory}, "its pool's values, per region"


def test_worker_keeps_a_given_metrics_directory(fake_bin: Path) -> None:
    env = {"REGION": "us-east-1", "PROMETHEUS_MULTIPROC_DIR": "/var/tmp/m", "METRICS_PORT": "9900"}
    result, _ = _run(fake_bin, "worker", **env)
    assert json.loads(result.stdout)["metrics"] == {
        "PROMETHEUS_MULTIPROC_DIR": "/var/tmp/m",
        "METRICS_PORT": "9900",
    }


def test_worker_refuses_to_start_without_REGION(fake_bin: Path) -> None:
    result, _ = _run(fake_bin, "worker")
    assert result.returncode != 0
    assert result.stdout == "", "celery must not have started"
    assert "set REGION to the region this fleet reconciles" in result.stderr


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


def test_flower_runs_the_guard_on_loopback_with_the_login_in_its_environment(fake_bin: Path) -> None:
    result, pid = _run(fake_bin, "flower", FLOWER_BASIC_AUTH=LOGIN)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["-m", "gco_tasks.flower", "--port=5555", "--address=127.0.0.1"]
    assert seen["auth"] == LOGIN, "Flower reads the login from its environment, not argv"
    assert seen["pid"] == pid


@pytest.mark.parametrize("login", [None, "", "ops:", f"{LOGIN},"])
def test_flower_refuses_to_start_without_a_well_formed_login(venv_bin: Path, login: str | None) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"} | ({} if login is None else {"FLOWER_BASIC_AUTH": login})
    result, _ = _run(venv_bin, "flower", **env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "", "Flower must not have started"
    assert "refusing to start" in result.stderr and "FLOWER_BASIC_AUTH" in result.stderr
