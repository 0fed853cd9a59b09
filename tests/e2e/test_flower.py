"""Flower through its guard, as real processes: ``python -m gco_tasks.flower`` (what the Procfile, k8s/,
compose.yaml and the sandbox run) against a private redis-server.

A malformed login (empty, ``user:``, ``:pass``, a trailing comma, no colon, a short password) makes it
exit 2 before Flower starts, with one sentence naming FLOWER_BASIC_AUTH and never the value; a good
login starts Flower, which answers 401 without it (and to ``Authorization: Basic =``, which plain Flower
lets in when the variable is empty) and 200 with it, even started next to a ``flowerconfig.py`` that
would clear the login (plain ``celery flower`` reads that file from its working directory).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gco_tasks.worker.flower import MIN_PASSWORD_LENGTH

SECRET = "Zq7-planted-secret-value"
LOGIN = f"ops:{SECRET}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(redis_url: str, **flower: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "REDIS_URL"))}
    return {**env, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **flower}


def _guarded(port: int) -> list[str]:
    return [sys.executable, "-m", "gco_tasks.flower", f"--port={port}", "--address=127.0.0.1"]


def _get(port: int, path: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _basic(login: str) -> str:
    return "Basic " + base64.b64encode(login.encode()).decode()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ops:",
        f":{SECRET}",
        f"{LOGIN},",
        f"{LOGIN},,dev:{SECRET}",
        SECRET,
        "ops:" + SECRET[: MIN_PASSWORD_LENGTH - 1],
    ],
    ids=["empty", "no-password", "no-user", "trailing-comma", "double-comma", "no-colon", "short"],
)
def test_malformed_login_refuses_to_start(redis_url: str, value: str) -> None:
    port = _free_port()
    result = subprocess.run(
        _guarded(port),
        env=_env(redis_url, FLOWER_BASIC_AUTH=value),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("gco-tasks flower: refusing to start: ") and "FLOWER_BASIC_AUTH" in line
    assert SECRET[: MIN_PASSWORD_LENGTH - 1] not in result.stdout + result.stderr, "the value is never echoed"
    assert not _listening(port), "Flower must not have started"


def test_no_login_refuses_to_start(redis_url: str) -> None:
    result = subprocess.run(
        _guarded(_free_port()), env=_env(redis_url), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "never starts without a login" in result.stderr


@pytest.fixture()
def flower(redis_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, log = _free_port(), tmp_path / "flower.log"
    (tmp_path / "flowerconfig.py").write_text("basic_auth = []\n")  # would open the UI if it were read
    with log.open("wb") as out:
        process = subprocess.Popen(
            _guarded(port),
            env=_env(redis_url, FLOWER_BASIC_AUTH=LOGIN),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"Flower not listening after 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield port, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_good_login_starts_flower_which_answers_401_without_it_and_200_with_it(
    flower: tuple[int, Path],
) -> None:
    port, log = flower
    assert _get(port, "/healthcheck") == 200, "probes need no login"
    for path in ("/", "/api/workers", "/api/tasks"):
        assert _get(port, path) == 401, path
        assert _get(port, path, "Basic =") == 401, f"{path}: the empty login must not exist"
        assert _get(port, path, _basic("ops:")) == 401, path
        assert _get(port, path, _basic(f"ops:{SECRET}x")) == 401, path
        assert _get(port, path, _basic(LOGIN)) == 200, path
    assert SECRET not in log.read_text(), "Flower's log never shows the password"
