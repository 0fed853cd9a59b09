"""The scale benchmark's report: issue 13's Targets table (medians) from ``bench/results/scale-*.json``,
how each figure grows from N = 100 to 10,000, and the plot ``bench/results/scale.png``.

Where it stands: beside the fleet (``python -m bench.scale report``); the plot is written beside the
result files it was drawn from. Untagged files
(``scale-<N>.json``) make the columns; ``scale-<N>-default-rate.json`` (a cold start at the default
``KUBE_WRITE_RATE``) and the ``short`` phase (a 2 s interval) add their rows where present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Row = tuple[str, str, Callable[[dict[str, Any]], str]]


def load(files: Sequence[Path]) -> tuple[dict[int, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Untagged runs by N, and tagged runs by ``<N>-<tag>``."""
    runs: dict[int, dict[str, Any]] = {}
    tagged: dict[str, dict[str, Any]] = {}
    for path in files:
        match = re.fullmatch(r"scale-(\d+)(?:-(.+))?\.json", path.name)
        if not match:
            continue
        data = json.loads(path.read_text())
        if match[2]:
            tagged[f"{match[1]}-{match[2]}"] = data
        else:
            runs[int(match[1])] = data
    return dict(sorted(runs.items())), tagged


def _get(run: dict[str, Any], *path: str) -> Any:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.2f}".rstrip("0").rstrip(".") if value < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def worker_rss(run: dict[str, Any]) -> int | None:
    """The largest peak RSS (VmHWM) among the worker's processes, in MB."""
    rss = run.get("worker_rss_mb") or {}
    return max((p.get("VmHWM", 0) for p in rss.values()), default=None)


def per_process(run: dict[str, Any]) -> str:
    """Reconciles per second per pool process, and how busy (CPU) each process was."""
    found = _get(run, "cold", "per_process")
    if not found:
        return "-"
    busy = "/".join(f"{100 * v:.0f}%" for v in found["cpu_busy_fraction"].values())
    return f"{_fmt(found['reconciles_per_second_per_process'])}/s (CPU {busy})"


def at(path: str, unit: str = "") -> Callable[[dict[str, Any]], str]:
    """A cell: the value at the dotted ``path`` of a run."""
    return lambda run: _fmt(_get(run, *path.split(".")), unit)


def pair(first: str, second: str, unit: str = "", between: str = " / ") -> Callable[[dict[str, Any]], str]:
    """A cell of two values (``second`` in parentheses when ``between`` is " (")."""
    closing = ")" if between == " (" else ""
    return lambda run: f"{at(first, unit)(run)}{between}{at(second, unit)(run)}{closing}"


STEADY = "steady.median."
ROWS: list[Row] = [
    ("steady cycle: Kubernetes requests (writes)", "<= 50 at 10k (0 writes)",
     pair(STEADY + "k8s_requests", STEADY + "k8s_writes", between=" (")),
    ("steady cycle: DynamoDB writes / messages", "0 / 0",
     pair(STEADY + "dynamo_writes", STEADY + "messages")),
    ("steady cycle: fan-out time (worker)", "<= 3 s at 10k", at(STEADY + "fan_out_seconds", " s")),
    ("steady cycle: fan-out + its reconciles", "-", at(STEADY + "cycle_seconds", " s")),
    ("fan-out alone (probe): time / moto's Scan", "-",
     pair("probe.seconds", "probe.moto.seconds.Scan", " s")),
    ("fan-out alone, collector not paused (A/B)", "-", at("probe_collector_on.seconds", " s")),
    ("1 % images changed: write -> Deployment p50 / p99", "p99 <= interval + 2 s",
     pair("change.p50", "change.p99", " s")),
    ("cold start, all in their final state (limit 500/s)", "<= 12 s at 1,000", at("cold.seconds", " s")),
    ("cold start: reconciles per worker process", "measured", per_process),
    ("cold start: Kubernetes writes/s, peak 5 s / mean", "<= the limit",
     pair("cold.k8s_writes_per_second_5s.peak", "cold.k8s_writes_per_second.mean")),
    ("memory: fan-out process peak RSS (probe)", "reported", at("probe.rss_mb_after.VmHWM", " MB")),
    ("memory: worker process peak RSS (largest)", "<= 300 MB", lambda r: _fmt(worker_rss(r), " MB")),
]  # fmt: skip


def table(runs: dict[int, dict[str, Any]], tagged: dict[str, dict[str, Any]]) -> str:
    sizes = list(runs)
    head = ["at N endpoints in one region", "target", *(f"N={n:,}" for n in sizes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, target, cell in ROWS:
        lines.append("| " + " | ".join([label, target, *(cell(runs[n]) for n in sizes)]) + " |")
    lines += extra_rows(runs, tagged, sizes)
    return "\n".join(lines)


def extra_rows(
    runs: dict[int, dict[str, Any]], tagged: dict[str, dict[str, Any]], sizes: list[int]
) -> list[str]:
    """Rows from the tagged runs: the default write rate's cold start and the 2 s interval."""
    rows = []
    default = [tagged.get(f"{n}-default-rate") for n in sizes]
    if any(default):
        cell = pair("cold.seconds", "cold.k8s_writes_per_second_5s.peak", between=" s (")
        cells = [cell(d) + " writes/s peak over 5 s)" if d else "-" for d in default]
        rows.append(
            "| cold start at the default limit (50/s, burst 100) | reported | " + " | ".join(cells) + " |"
        )
    short = [_get(runs[n], "short") or _get(tagged.get(f"{n}-short") or {}, "short") for n in sizes]
    if any(short):
        cells = [
            f"{_fmt(s['lists_per_cycle'])} LISTs ({_fmt(s['k8s_by_verb'].get('get', 0))} GETs) / cycle"
            if s else "-"
            for s in short
        ]  # fmt: skip
        rows.append("| 2 s interval: LISTs per cycle | <= 10 at 1,000 | " + " | ".join(cells) + " |")
    return rows


def plot(runs: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(runs)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    series: list[tuple[Any, str, list[tuple[str, Callable[[dict[str, Any]], Any]]]]] = [
        (axes[0][0], "per steady cycle", [
            ("Kubernetes requests", lambda r: _get(r, "steady", "median", "k8s_requests")),
            ("messages", lambda r: _get(r, "steady", "median", "messages")),
            ("DynamoDB writes", lambda r: _get(r, "steady", "median", "dynamo_writes")),
        ]),
        (axes[0][1], "seconds", [
            ("fan-out (worker)", lambda r: _get(r, "steady", "median", "fan_out_seconds")),
            ("steady cycle", lambda r: _get(r, "steady", "median", "cycle_seconds")),
            ("cold start to all running", lambda r: _get(r, "cold", "seconds")),
        ]),
        (axes[1][0], "1 % change: write -> Deployment (s)", [
            ("p50", lambda r: _get(r, "change", "p50")),
            ("p99", lambda r: _get(r, "change", "p99")),
        ]),
        (axes[1][1], "peak RSS (MB)", [
            ("fan-out process", lambda r: _get(r, "probe", "rss_mb_after", "VmHWM")),
            ("worker process (largest)", worker_rss),
        ]),
    ]  # fmt: skip
    for axis, ylabel, lines in series:
        for label, value in lines:
            points = [(n, value(runs[n])) for n in sizes if value(runs[n]) is not None]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=label)
        axis.set_xscale("log")
        axis.set_xlabel("endpoints in the region (N)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle("gco-tasks: growth with N (real workers, 2 processes; moto; sandbox API server)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(files: Sequence[Path]) -> int:
    runs, tagged = load(files)
    if not runs:
        print("no bench/results/scale-<N>.json yet: run `python -m bench.scale run --endpoints N` first")
        return 1
    print(table(runs, tagged))
    for n, run in runs.items():
        meta = run["meta"]
        busy = f"load {meta['load_before']:.1f} -> {meta['load_after']:.1f}"
        rate = f"write rate {meta['write_rate']}"
        print(f"\nN={n:,}: {meta['date']}, {busy}, {rate}, interval {meta['interval']} s")
    target = Path(files[0]).parent / "scale.png"  # beside the results it was drawn from
    plot(runs, target)
    print(f"\nplot: {target}")
    return 0
