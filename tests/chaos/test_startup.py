"""Bad input at the edges: a worker or beat started with a broken setting stops at once with one line
on stderr that names the setting (and never echoes a password), exit code 1, no traceback.

The processes are real ``celery -A gco_tasks worker|beat`` commands, started together (each only
imports and checks, then exits) so the whole table costs one process start-up.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gco_sandbox.services import free_port

from .harness import CELERY

SECRET = "PLANTED-SECRET-7f3a"
WORKER = ["worker", "-Q", "gco.us-east-1", "--without-mingle", "--without-gossip"]

#: (process, settings, what the one line must name). Every check of the settings themselves is unit-tested
#: (tests/unit/worker/test_redis_settings.py); here one case of each kind goes through a real process.
CASES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "bad REDIS_URL": (WORKER, {"REDIS_URL": f"redis://:{SECRET}@localhost:notaport/0"}, "REDIS_URL"),
    "unverified TLS, beat": (
        ["beat"],
        {"REDIS_URL": f"rediss://:{SECRET}@h/0?ssl_cert_reqs=none"},
        "REDIS_ALLOW",
    ),
    "unknown region": (WORKER, {"REGION": "mars-north-1"}, "REGION"),
    "missing kubeconfig": (WORKER, {"KUBECONFIG": "/nonexistent/kubeconfig"}, "KUBECONFIG"),
}
#: The one line Celery itself prints before beat builds its scheduler (where beat's checks run).
BEAT_BANNER = re.compile(r"^celery beat v[\d.]+ \(\w+\) is starting\.$")


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server does not listen (a free port on loopback)."""
    port = free_port()
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: x, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    return path


def test_broken_settings_stop_with_one_line(tmp_path: Path, redis_url: str) -> None:
    base = {"REGION": "us-east-1", "REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    base["KUBECONFIG"] = str(unreachable_kubeconfig(tmp_path / "kubeconfig"))
    cases = {**CASES, "unreachable api server": (WORKER, {}, "Kubernetes API server")}
    running = {
        name: subprocess.Popen(
            [*CELERY, *args], env={**base, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (args, env, _) in cases.items()
    }
    failures = []
    for name, process in running.items():
        try:
            out, err = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        lines = [line for line in (out + err).splitlines() if line.strip() and not BEAT_BANNER.match(line)]
        named = cases[name][2]
        ok = (
            process.returncode == 1
            and len(lines) == 1
            and lines[0].startswith("gco-tasks: cannot start: ")
            and named in lines[0]
            and SECRET not in out + err
            and "Traceback" not in out + err
        )
        if not ok:
            failures.append(f"{name}: exit {process.returncode}, output {out + err!r}")
    assert not failures, "\n".join(failures)


def test_other_commands_refuse_a_broken_url_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REDIS_URL": f"redis://:{SECRET}@/0"}
    done = subprocess.run(
        [*CELERY, "call", "gco_tasks.fan_out"], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 1
    assert done.stdout + done.stderr == (
        "gco-tasks: cannot start: invalid configuration: REDIS_URL: has no host name (got 'redis://:***@/0')\n"
    )
