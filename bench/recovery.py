"""Recovery benchmark (issue 24, item 8): the chaos scenarios run several times, their recovery times
reported as min/median/max beside the product's claim for each.

Where it stands: beside the fleet, never imported by it. The chaos tests (``tests/chaos/``) assert only
generous bounds (``tests/support/bounds.py``: the claim three times over plus 10 s) and note every
recovery they measure, with its claim, in the file named by ``GCO_CHAOS_RECORD``; this runs them (one
file at a time, ``--runs`` times) with that set, and prints and writes the table that
docs/operations.md's chaos recovery table comes from.

    .venv/bin/python -m bench.recovery [--runs 3] [--files test_worker_death,test_two_beats]
        -> bench/results/recovery.json (every sample, and the summary)
    .venv/bin/python -m bench.recovery --report   # the table again from bench/results/recovery.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "recovery.json"
FILES = (
    "test_worker_death",
    "test_two_beats",
    "test_sentinel_failover",
    "test_redis_restart",
    "test_dependencies",
)
SERVER = re.compile(r"\[(standin|real)\]")


def run_file(name: str, record: Path) -> tuple[int, float]:
    """One chaos file under pytest with ``GCO_CHAOS_RECORD``; (exit code, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", f"tests/chaos/{name}.py", "-q", "-p", "no:randomly", "-x"],
        cwd=ROOT,
        env={**os.environ, "GCO_CHAOS_RECORD": str(record)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode, time.monotonic() - started


def read_samples(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def summarize(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (measurement, server): n, min, median, max and the claim, in first-seen order."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in samples:
        found = SERVER.search(sample["test"])
        server = found.group(1) if found else "standin"
        row = rows.setdefault(
            (sample["what"], server),
            {"what": sample["what"], "server": server, "claim": sample.get("claim"), "seconds": []},
        )
        row["seconds"].append(float(sample["seconds"]))
    summary = []
    for row in rows.values():
        seconds = row.pop("seconds")
        row |= {
            "n": len(seconds),
            "min": min(seconds),
            "median": statistics.median(seconds),
            "max": max(seconds),
        }
        summary.append(row)
    return summary


def table(summary: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| measurement | server | runs | min | median | max | claim |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        claim = "" if row["claim"] is None else f"{row['claim']:.1f} s"
        if row["claim"] is not None and row["max"] > row["claim"]:
            claim += " (exceeded)"
        lines.append(
            f"| {row['what']} | {row['server']} | {row['n']} | {row['min']:.1f} s | {row['median']:.1f} s "
            f"| {row['max']:.1f} s | {claim} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each file (3)")
    parser.add_argument("--files", default=",".join(FILES), help="chaos files, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write ({RESULTS})")
    parser.add_argument("--report", action="store_true", help="print the table of --out, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print(table(json.loads(args.out.read_text())["summary"]))
        return 0
    failures: list[str] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gco-recovery-") as scratch:
        record = Path(scratch) / "samples.jsonl"
        for index in range(args.runs):
            for name in args.files.split(","):
                code, seconds = run_file(name, record)
                runs.append({"run": index + 1, "file": name, "exit": code, "seconds": round(seconds, 1)})
                print(f"run {index + 1}/{args.runs} {name}: exit {code} in {seconds:.0f} s", flush=True)
                if code != 0:
                    failures.append(f"{name} (run {index + 1})")
        samples = read_samples(record)
    summary = summarize(samples)
    load = os.getloadavg()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in load],
        "runs": runs,
        "samples": samples,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(summary))
    if failures:
        print("failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
