"""The fleet refuses to start on a wrong environment, in one sentence, as a user starts it: a real
``celery -A gco_tasks worker`` / ``beat`` without ``REGION``, with a mistyped one, and a worker whose
``KUBECONFIG`` is missing, a directory or not a kubeconfig. Nothing is started against the broker (there
is none listening), so each refusal comes before any connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gco_tasks.worker.preflight import kubeconfig_problem

CELERY = [sys.executable, "-m", "celery", "-A", "gco_tasks"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "KUBE", "REDIS"))}
    env.pop("REGION", None)
    env.pop("KNOWN_REGIONS", None)
    env.update(HOME=str(tmp_path), REDIS_URL="redis://127.0.0.1:9/0", PYTHONUNBUFFERED="1", **extra)
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CELERY, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gco-tasks: cannot start: "), result.stderr
    return last


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_without_REGION_worker_and_beat_refuse(process: str, tmp_path: Path) -> None:
    line = refusal(start([process, "--loglevel", "INFO"], environment(tmp_path)))
    assert "REGION is not set: set it to the region this fleet reconciles (e.g. REGION=us-east-1)" in line


def test_a_mistyped_REGION_is_refused_with_a_guess(tmp_path: Path) -> None:
    line = refusal(start(["worker"], environment(tmp_path, REGION="us-est-1")))
    assert "REGION: unknown region 'us-est-1'" in line and "did you mean 'us-east-1'?" in line


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "does not exist"),
        ("directory", "is not a file"),
        ("garbage", "not a usable kubeconfig"),
    ],
)
def test_a_worker_without_a_usable_KUBECONFIG_names_it(setup: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig.yaml"
    if setup == "directory":
        path.mkdir()
    elif setup == "garbage":
        path.write_text("this: is: not: a kubeconfig\n")
    line = refusal(start(["worker"], environment(tmp_path, REGION="us-east-1", KUBECONFIG=str(path))))
    assert f"KUBECONFIG={path}" in line and expected in line


def test_no_KUBECONFIG_and_no_home_config_says_so(tmp_path: Path) -> None:
    message = kubeconfig_problem({}, tmp_path, token_file=tmp_path / "no-token") or ""
    assert "KUBECONFIG is not set" in message and str(tmp_path / ".kube" / "config") in message
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    assert kubeconfig_problem({}, tmp_path, token_file=tmp_path / "no-token") is None
    token = tmp_path / "token"
    token.write_text("t")
    assert kubeconfig_problem({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, tmp_path, token_file=token) is None
