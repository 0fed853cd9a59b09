"""Liveness that means something: the worker's and beat's liveness probes, exactly as ``k8s/base/`` runs
them (the command read from the manifests), fail once the broker has been away longer than the probe's
``LIVENESS_MAX_AGE_SECONDS`` and pass again soon after it returns.

Here the worker touches its file every second (``HEARTBEAT_INTERVAL_SECONDS=1``, after a PING of Redis)
and beat after each tick that reached Redis (at least every second), and the probes' age is 3 s; in
``k8s/`` the numbers are 10 s and 60 s (the probe fails 60-70 s after Redis went away).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from .conftest import Chaos
from .harness import RedisNode, wait_until

K8S = Path(__file__).resolve().parents[2] / "k8s" / "base"
MAX_AGE = 3


def probe_command(manifest: str) -> list[str]:
    deployment = yaml.safe_load((K8S / manifest).read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command: list[str] = container["livenessProbe"]["exec"]["command"]
    return command


def passes(command: list[str], chaos: Chaos) -> bool:
    env = {
        "PATH": "/usr/bin:/bin",
        "WORKER_HEARTBEAT_FILE": chaos.env["WORKER_HEARTBEAT_FILE"],
        "BEAT_HEARTBEAT_FILE": chaos.env["BEAT_HEARTBEAT_FILE"],
        "LIVENESS_MAX_AGE_SECONDS": str(MAX_AGE),
    }
    return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0


def test_probes_fail_without_the_broker_and_pass_when_it_returns(chaos: Chaos, redis_node: RedisNode) -> None:
    worker, beat = probe_command("worker.yaml"), probe_command("beat.yaml")
    chaos.processes.worker("worker", concurrency=1)
    chaos.processes.beat()
    wait_until(lambda: passes(worker, chaos) and passes(beat, chaos), 60, "both probes passing")

    redis_node.kill()
    gone = time.monotonic()
    wait_until(lambda: not passes(worker, chaos), 20, "the worker's probe failing without Redis")
    worker_failed = time.monotonic() - gone
    wait_until(lambda: not passes(beat, chaos), 20, "beat's probe failing without Redis")
    beat_failed = time.monotonic() - gone
    chaos.record(f"Redis gone -> worker probe fails (max age {MAX_AGE} s, touch 1 s)", worker_failed)
    chaos.record(f"Redis gone -> beat probe fails (max age {MAX_AGE} s, loop 1 s)", beat_failed)
    assert chaos.processes.alive("worker") and chaos.processes.alive("beat")

    redis_node.start()
    both = wait_until(lambda: passes(worker, chaos) and passes(beat, chaos), 30, "both probes passing again")
    chaos.record("Redis back -> both probes pass again", both)
