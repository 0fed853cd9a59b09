"""The worker's and beat's liveness probes exactly as ``k8s/base/`` runs them: the command is read from
the manifests and run with the container's variables, the probes' age lowered to ``MAX_AGE`` seconds
(the chaos processes touch their files every second; ``k8s/`` says 10 s and 60 s)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s" / "base"
MAX_AGE = 3


def probe_command(manifest: str) -> list[str]:
    deployment = yaml.safe_load((K8S / manifest).read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["livenessProbe"]["exec"]["command"]
    return command


def passes(manifest: str, env: Mapping[str, str]) -> bool:
    """The probe of ``manifest`` passes now for a process with ``env``."""
    variables = {
        "PATH": "/usr/bin:/bin",
        "WORKER_HEARTBEAT_FILE": env["WORKER_HEARTBEAT_FILE"],
        "BEAT_HEARTBEAT_FILE": env["BEAT_HEARTBEAT_FILE"],
        "LIVENESS_MAX_AGE_SECONDS": str(MAX_AGE),
    }
    done = subprocess.run(probe_command(manifest), env=variables, capture_output=True, timeout=10)
    return done.returncode == 0


def worker_alive(env: Mapping[str, str]) -> bool:
    return passes("worker.yaml", env)


def beat_alive(env: Mapping[str, str]) -> bool:
    return passes("beat.yaml", env)
