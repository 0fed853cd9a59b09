"""Smoke test of the scale benchmark (``python -m bench.scale run``) at a tiny size: real worker processes
(2), moto and the stand-in each in a process of their own, every phase end to end, and the report it
writes reads back into the Targets table. Numbers are not asserted (the benchmark measures them); what
is asserted is what the design promises whatever the speed: every endpoint reaches its final state,
the steady cycle writes nothing to Kubernetes, and the fan-out probe reads the whole table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_scale_bench_runs_every_phase_at_tiny_n(tmp_path: Path) -> None:
    out = tmp_path / "scale-6.json"
    command = [sys.executable, "-m", "bench.scale", "run", "--endpoints", "6", "--interval", "3"]
    command += ["--cycles", "1", "--phases", "cold,steady,change,short,probe", "--short-cycles", "2"]
    command += ["--ready-delay", "0.2", "--out", str(out)]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["cold"]["failed"] == 0 and report["cold"]["reconciles"] >= 6
    assert report["cold"]["k8s_writes_per_second"]["writes"] > 0
    steady = report["steady"]["median"]
    assert steady["k8s_writes"] == 0 and steady["dynamo_writes"] == 0
    assert report["change"]["edited"] == 1 and report["change"]["p99"] > 0
    assert report["short"]["fan_outs_ran"] >= 1
    assert report["probe"]["result"]["records"] == 6
    assert (tmp_path / "fanout-6.prof").exists()

    table = subprocess.run(
        [sys.executable, "-m", "bench.scale", "report", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr[-3000:]
    assert "| steady cycle: Kubernetes requests (writes) |" in table.stdout
