"""Smoke test of the fleet benchmark (``python -m bench.fleet``) at a tiny size: the direct-call section
runs end to end on its own private services and its steady-state cycle costs what the design promises
(four LISTs, no Kubernetes write, no DynamoDB write, no message beyond resync slots). Numbers are not
asserted: performance is measured by the benchmark, not timed in tests."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

from gco_tasks.core.triage import resync_cycles

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_bench_direct_section_runs_and_steady_state_writes_nothing() -> None:
    command = [sys.executable, "-m", "bench.fleet", "--endpoints", "5", "--cycles", "1"]
    command += ["--no-celery", "--json", "--ready-delay", "0.2"]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)

    direct = report["direct"]
    assert direct["mix"] == {"autoscaling": 1, "canary": 1, "plain": 2, "stopped": 1}
    # the stopped endpoint's report; each new one's first is its look's (here the next cycle's)
    assert direct["first_cycle"]["dynamo_writes"] == 1
    assert direct["converge"]["dynamo_writes"] >= 4
    assert direct["first_cycle"]["k8s_by_verb"].get("apply", 0) > 0

    steady = direct["steady"]
    assert steady["cycles"] == 1
    assert steady["k8s_writes_max"] == 0
    assert steady["dynamo_writes_max"] == 0
    assert steady["k8s_by_verb_median"] == {"list": 4}
    assert steady["actions_total"] == 0
    # A steady cycle sends no message but the periodic resyncs (heartbeats) whose slot falls in it.
    assert steady["reconcile_ms"]["n"] <= most_resyncs_in_one_cycle(5)

    change = direct["change"]["cycle"]
    assert change["actions"] == {"apply Deployment": 1}
    assert change["dynamo_writes"] == 1
    assert "celery" not in report
    assert report["original_model"]["original"]["k8s_total"] == 25


def most_resyncs_in_one_cycle(endpoints: int) -> int:
    """How many of the benchmark's endpoints at most share a resync slot (default heartbeat and interval)."""
    cycles = resync_cycles(300, 15)
    slots = Counter(zlib.crc32(f"bench-{index:04d}".encode()) % cycles for index in range(endpoints))
    return max(slots.values())
