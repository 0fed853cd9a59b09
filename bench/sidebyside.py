"""Side by side: GCO's monitor (``bench.monitor``, a model of its loop) against gco-tasks (a real worker,
``celery worker -c 2``) on the same machine, each on fresh services of the same kind (moto's DynamoDB,
Redis, the stand-in or the real control plane), in one run.

Where it stands: beside the fleet. ``run`` starts each side in a process of its own (``side``), one
after the other (their order alternates from run to run), and writes both to
``bench/results/sidebyside-<N>-<cluster>[-<tag>].json``; ``report`` prints the table of every result
file (min / median / max over the runs, and the ratio monitor / fleet measured within each run).

Phases, in order, for each side:

- **cold**: N new endpoints to all ``running`` (``--cold-interval``, 2 s by default: the monitor's cycle
  then starts as soon as the last one ended and the interval passed), from the monitor's process being
  up, or the fleet's first fan-out (its worker already online). Kubernetes requests by verb, DynamoDB
  calls, messages (fleet: reconcile messages sent; fan-outs that expired unrun), CPU of every part.
- **steady**: at ``--interval`` (15 s): K cycles once quiet: requests, DynamoDB writes, messages.
- **change**: the image of 1 % of the endpoints, then of 100, edited at random moments over one
  interval: write -> the Deployment's patch or apply, p50 / p99, and the requests it took.

    .venv/bin/python -m bench.sidebyside run --endpoints 200 [--cluster real] [--runs 3]
    .venv/bin/python -m bench.sidebyside report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, percentile

RESULTS = PROJECT_ROOT / "bench" / "results"
log = logging.getLogger("bench.sidebyside")
DYNAMO_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
#: The images each change phase writes (a different one each, so a second phase changes something).
CHANGE_IMAGES = ("vllm/vllm-openai:v0.6.4", "vllm/vllm-openai:v0.6.5")


def by_verb(stats: dict[str, int]) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for key, count in stats.items():
        verbs[key.split()[0]] += count
    return dict(sorted(verbs.items()))


def dynamo_summary(stats: dict[str, Any]) -> dict[str, Any]:
    calls = {k: int(v) for k, v in stats.get("calls", {}).items()}
    return {
        "calls": calls,
        "writes": sum(calls.get(op, 0) for op in DYNAMO_WRITES),
        "scan_seconds": stats.get("seconds", {}).get("Scan", 0.0),
    }


def edits(names: Sequence[str], count: int, interval: float, seed: int) -> list[tuple[str, float]]:
    """``count`` endpoints and the moments (seconds into one interval) their image is edited."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(list(names), min(count, len(names))))
    return list(zip(chosen, sorted(rng.uniform(0, interval) for _ in chosen), strict=True))


def write_images(store: Any, plan: Sequence[tuple[str, float]], image: str) -> dict[str, float]:
    """Edit each image through the store at its moment; when each write landed."""
    written: dict[str, float] = {}
    start = time.monotonic()
    for name, moment in plan:
        time.sleep(max(0.0, start + moment - time.monotonic()))
        store.update_spec(name, lambda spec: spec.with_changes(image=image))
        written[name] = time.time()
    return written


def latencies(written: dict[str, float], applied: dict[str, float]) -> dict[str, Any]:
    values = [applied[name] - written[name] for name in written]
    return {
        "edited": len(values),
        "p50": round(statistics.median(values), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


# --------------------------------------------------------------------------- the monitor's side


class MonitorWatch:
    """Tails the monitor's journal: every status write, image patch and cycle, as they happen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cond = threading.Condition()
        self.lines: list[dict[str, Any]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="monitor-journal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.path.exists() and not self.stopped.is_set():
            time.sleep(0.05)
        with self.path.open() as journal:
            buffer = ""
            while not self.stopped.is_set():
                chunk = journal.readline()
                if not chunk:
                    time.sleep(0.05)
                    continue
                buffer += chunk
                if not buffer.endswith("\n"):
                    continue
                line, buffer = json.loads(buffer), ""
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def since(self, mark: int, kind: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [line for line in self.lines[mark:] if kind is None or line["kind"] == kind]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


class MonitorProcess:
    """``python -m bench.monitor`` in a session of its own, journal in the work directory."""

    def __init__(self, env: dict[str, str], workdir: Path, interval: float, tag: str) -> None:
        self.journal = workdir / f"monitor-{tag}.jsonl"
        self.log = workdir / f"monitor-{tag}.log"
        command = [sys.executable, "-m", "bench.monitor", "--journal", str(self.journal),
                   "--interval", str(interval)]  # fmt: skip
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.watch = MonitorWatch(self.journal)
        if not self.watch.wait(lambda: bool(self.watch.since(0, "online")), 120):
            raise RuntimeError(f"the monitor did not start:\n{self.log.read_text()[-3000:]}")
        self.online_at = float(self.watch.since(0, "online")[0]["t"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.watch.stop()


def monitor_side(
    args: argparse.Namespace, services: Any, mix: Sequence[Any], env: dict[str, str]
) -> dict[str, Any]:
    from bench.procs import cpu_seconds
    from gco_tasks.adapters.store import EndpointStore
    from gco_tasks.core.config import load_settings

    found: dict[str, Any] = {}
    final = {e.name for e in mix if e.kind != "stopped"}  # the monitor never reports one it never made
    parts = services.component_pids()
    # cold start
    services.k8s_reset()
    services.dynamo_reset()
    cpu_before = cpu_seconds(list(parts.values()))
    monitor = MonitorProcess(env, services.workdir, args.cold_interval, "cold")
    try:
        state: dict[str, str] = {}
        last: dict[str, float] = {}
        cursor = [0]

        def all_running() -> bool:
            lines = monitor.watch.lines
            while cursor[0] < len(lines):
                line = lines[cursor[0]]
                cursor[0] += 1
                if line["kind"] == "status":
                    state[line["name"]] = line["state"]
                    last[line["name"]] = line["t"]
            return all(state.get(name) == "running" for name in final)

        timeout = 600 + len(mix) * 0.5
        if not monitor.watch.wait(all_running, timeout):
            missing = sum(1 for name in final if state.get(name) != "running")
            raise RuntimeError(f"monitor cold start: {missing} endpoints not running after {timeout:.0f}s")
        done_at = max(last[name] for name in final)
        cycles = monitor.watch.since(0, "cycle")
        k8s = services.k8s_stats()
        cpu_after = cpu_seconds([*parts.values(), monitor.process.pid])
    finally:
        monitor.stop()
    names = {str(pid): name for name, pid in {**parts, "monitor": monitor.process.pid}.items()}
    found["cold"] = {
        "seconds": round(done_at - monitor.online_at, 2),
        "cycles_begun": len(cycles) + 1,
        "first_cycle_seconds": round(cycles[0]["ended"] - cycles[0]["began"], 2) if cycles else None,
        "scan_cut": any(c["cut"] for c in cycles),
        "k8s_requests": sum(k8s.values()),
        "k8s_by_verb": by_verb(k8s),
        "k8s": k8s,
        "dynamo": dynamo_summary(services.dynamo_stats()),
        "messages": 0,
        "cpu_seconds": {names[pid]: round(cpu_after[pid] - cpu_before.get(pid, 0.0), 1) for pid in cpu_after},
    }
    log.warning("monitor cold: %s s", found["cold"]["seconds"])
    # steady cycles, then the changes, at the interval
    store = EndpointStore.from_settings(load_settings())
    monitor = MonitorProcess(env, services.workdir, args.interval, "steady")
    try:
        watch = monitor.watch

        def cycle_end(after: int) -> dict[str, Any]:
            if not watch.wait(lambda: bool(watch.since(after, "cycle")), 1800):
                raise RuntimeError("the monitor's cycle did not end")
            return watch.since(after, "cycle")[0]

        mark = watch.mark()
        cycle_end(mark)  # the first cycle after a restart promotes what the cold start left deploying
        runs = []
        for _ in range(args.cycles):
            mark = watch.mark()
            services.k8s_reset()
            services.dynamo_reset()
            ended = cycle_end(mark)
            k8s = services.k8s_stats()
            dynamo = dynamo_summary(services.dynamo_stats())
            runs.append(
                {
                    "cycle_seconds": round(ended["ended"] - ended["began"], 2),
                    "k8s_requests": sum(k8s.values()),
                    "k8s_by_verb": by_verb(k8s),
                    "dynamo_writes": dynamo["writes"],
                    "messages": 0,
                }
            )
        found["steady"] = {"cycles": runs, "median": medians(runs)}
        log.warning("monitor steady: %s", found["steady"]["median"])
        eligible = sorted(final)
        for phase, count, image, seed in change_phases(args, len(mix)):
            mark = watch.mark()
            services.k8s_reset()
            services.dynamo_reset()
            written = write_images(store, edits(eligible, count, args.interval, seed), image)
            applied: dict[str, float] = {}

            def patched(
                mark: int = mark, written: dict[str, float] = written, applied: dict[str, float] = applied
            ) -> bool:
                for line in watch.since(mark, "image"):
                    if line["name"] in written and line["t"] >= written[line["name"]]:
                        applied.setdefault(line["name"], line["t"])
                return len(applied) == len(written)

            if not watch.wait(patched, 10 * args.interval + len(mix) / 10):
                raise RuntimeError(f"monitor {phase}: {len(written) - len(applied)} Deployments not patched")
            k8s = services.k8s_stats()
            found[phase] = {
                **latencies(written, applied),
                "k8s_by_verb": by_verb(k8s),
                "dynamo_writes": dynamo_summary(services.dynamo_stats())["writes"],
            }
            log.warning("monitor %s: %s", phase, found[phase])
    finally:
        monitor.stop()
    return found


def change_phases(args: argparse.Namespace, endpoints: int) -> list[tuple[str, int, str, int]]:
    """(phase, how many images, the image, the seed) of each change phase."""
    phases = []
    for index, size in enumerate(args.changes.split(",")):
        count = max(1, round(endpoints * float(size))) if "." in size else int(size)
        label = f"change_{float(size) * 100:g}pct" if "." in size else f"change_{size}"
        phases.append(
            (label, min(count, endpoints - 1), CHANGE_IMAGES[index % len(CHANGE_IMAGES)], 13 + index)
        )
    return phases


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)] if runs else []
    return {key: statistics.median(run[key] for run in runs) for key in keys}


# --------------------------------------------------------------------------- the fleet's side


def fleet_side(
    args: argparse.Namespace, services: Any, mix: Sequence[Any], settings: dict[str, str]
) -> dict[str, Any]:
    import redis

    from bench.observe import FAN_OUT, RECONCILE_MESSAGES, Events
    from bench.phases import Bench, cold_start, steady, wait_quiet
    from bench.scale import start_worker
    from gco_tasks.adapters.store import EndpointStore
    from gco_tasks.core.config import load_settings
    from gco_tasks.worker import tasks
    from gco_tasks.worker.app import app

    store = EndpointStore.from_settings(load_settings())
    broker = redis.Redis.from_url(services.redis.url)
    bench = Bench(services, Events(app).start(), tasks, broker, mix, store)
    found: dict[str, Any] = {}
    cold_settings = {**settings, "RECONCILE_INTERVAL_SECONDS": str(args.cold_interval)}
    worker = start_worker(bench, cold_settings, "worker-cold")
    try:
        sent_mark = bench.events.sent_mark()
        began = time.time()
        cold = cold_start(bench, args.cold_interval, 600 + len(mix) * 0.5)
        revoked = bench.events.revoked_since(sent_mark)
        cold["messages"] = bench.events.messages_since(sent_mark)
        cold["fan_outs_expired"] = revoked.get(FAN_OUT, 0)
        cold["reconciles_expired"] = sum(revoked.get(name, 0) for name in RECONCILE_MESSAGES)
        cold["k8s_by_verb"] = by_verb(cold["k8s_requests"])
        cold["k8s"] = cold["k8s_requests"]
        cold["k8s_requests"] = sum(cold["k8s"].values())
        cold["dynamo"] = dynamo_summary(cold["dynamo"])
        cold["began"] = began
        found["cold"] = cold
        log.warning("fleet cold: %s s", cold["seconds"])
    finally:
        worker.stop()
    worker = start_worker(bench, settings, "worker-steady")
    try:
        wait_quiet(bench)
        result = steady(bench, args.cycles)
        found["steady"] = {
            "cycles": [
                {
                    "cycle_seconds": c["cycle_seconds"],
                    "fan_out_seconds": c["fan_out_seconds"],
                    "k8s_requests": c["k8s_requests"],
                    "k8s_by_verb": c["k8s_by_verb"],
                    "dynamo_writes": c["dynamo_writes"],
                    "messages": c["messages"],
                    "moto_scan_seconds": c["moto_scan_seconds"],
                }
                for c in result["cycles"]
            ]
        }
        found["steady"]["median"] = medians(found["steady"]["cycles"])
        log.warning("fleet steady: %s", found["steady"]["median"])
        eligible = sorted(e.name for e in mix if e.kind != "stopped")
        for phase, count, image, seed in change_phases(args, len(mix)):
            found[phase] = fleet_change(bench, eligible, count, image, seed, args.interval)
            log.warning("fleet %s: %s", phase, found[phase])
    finally:
        worker.stop()
        bench.events.stop()
    return found


def fleet_change(
    bench: Any, eligible: Sequence[str], count: int, image: str, seed: int, interval: float
) -> dict[str, Any]:
    """As the monitor's: edits over one interval with beat's cadence running; write -> the reconcile
    that applied the Deployment."""
    from bench.observe import Ticker
    from bench.phases import note_applied, wait_quiet

    wait_quiet(bench)
    bench.services.k8s_reset()
    bench.services.dynamo_reset()
    mark, sent_mark = bench.events.mark(), bench.events.sent_mark()
    ticker = Ticker(bench.fan_out, interval).start()
    try:
        written = write_images(bench.store, edits(eligible, count, interval, seed), image)
        applied: dict[str, float] = {}

        def all_applied() -> bool:
            note_applied(bench, mark, written, applied)
            return len(applied) == len(written)

        if not bench.events.wait(all_applied, timeout=10 * interval + len(bench.mix) / 10, poll=1.0):
            raise RuntimeError(f"fleet change: {len(written) - len(applied)} Deployments not applied")
    finally:
        ticker.stop()
    wait_quiet(bench)
    k8s = bench.services.k8s_stats()
    return {
        **latencies(written, applied),
        "k8s_by_verb": by_verb(k8s),
        "dynamo_writes": dynamo_summary(bench.services.dynamo_stats())["writes"],
        "messages": bench.events.messages_since(sent_mark),
    }


# --------------------------------------------------------------------------- one side, one process


def side(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import endpoint_mix
    from bench.procs import create_table, process_services, seed_records

    settings = {"KUBE_WRITE_RATE": str(args.write_rate), "RECONCILE_INTERVAL_SECONDS": str(args.interval)}
    real_gpus = args.endpoints * 6 // 5 + 8 if args.cluster == "real" else 0
    load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix=f"gco-side-{args.which}-") as tmp,
        process_services(Path(tmp), args.ready_delay, real_gpus) as services,
    ):
        for key in [key for key in os.environ if key.startswith(("KUBE", "REDIS"))]:
            del os.environ[key]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "REDIS", "RECONCILE"))}
        env.update(services.env(**settings))
        os.environ.update(services.env(**settings))
        mix = endpoint_mix(args.endpoints)
        create_table(services.client())
        seed_records(services.client(), mix)
        began = time.perf_counter()
        if args.which == "monitor":
            found = monitor_side(args, services, mix, env)
        else:
            found = fleet_side(args, services, mix, settings)
        found["meta"] = {
            "seconds": round(time.perf_counter() - began, 1),
            "load_before": [round(x, 2) for x in load],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
    return found


# --------------------------------------------------------------------------- runs and the report


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "command": "python -m bench.sidebyside " + " ".join(sys.argv[1:]),
            "endpoints": args.endpoints,
            "cluster": args.cluster,
            "write_rate": args.write_rate,
            "cold_interval": args.cold_interval,
            "interval": args.interval,
            "ready_delay": args.ready_delay if args.cluster == "standin" else None,
            "worker": "celery -A gco_tasks worker -c 2 (2 prefork processes)",
            "git": git_head(),
        },
        "runs": [],
    }
    for index in range(args.runs):
        order = ("monitor", "fleet") if index % 2 == 0 else ("fleet", "monitor")
        one: dict[str, Any] = {"order": list(order)}
        for which in order:
            one[which] = one_side(args, which)
        one["ratios"] = ratios(one["monitor"], one["fleet"])
        report["runs"].append(one)
        log.warning("run %d: %s", index + 1, one["ratios"])
    report["summary"] = summary(report["runs"])
    return report


def one_side(args: argparse.Namespace, which: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.sidebyside", "side", "--which", which,
            "--endpoints", str(args.endpoints), "--cluster", args.cluster,
            "--write-rate", str(args.write_rate), "--cold-interval", str(args.cold_interval),
            "--interval", str(args.interval), "--cycles", str(args.cycles), "--changes", args.changes,
            "--ready-delay", str(args.ready_delay)]  # fmt: skip
    done = subprocess.run(
        argv,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {which} side failed:\n{done.stderr[-4000:]}")
    sys.stderr.write(done.stderr[-2000:])
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


#: Figures compared, as paths into a side's result.
FIGURES: dict[str, tuple[str, ...]] = {
    "cold start to all running (s)": ("cold", "seconds"),
    "cold: Kubernetes requests": ("cold", "k8s_requests"),
    "cold: DynamoDB writes": ("cold", "dynamo", "writes"),
    "cold: messages": ("cold", "messages"),
    "steady: cycle (s)": ("steady", "median", "cycle_seconds"),
    "steady: Kubernetes requests": ("steady", "median", "k8s_requests"),
    "steady: DynamoDB writes": ("steady", "median", "dynamo_writes"),
    "steady: messages": ("steady", "median", "messages"),
    "change 1 %: p50 (s)": ("change_1pct", "p50"),
    "change 1 %: p99 (s)": ("change_1pct", "p99"),
    "change 100: p50 (s)": ("change_100", "p50"),
    "change 100: p99 (s)": ("change_100", "p99"),
}


def pick(found: dict[str, Any], path: Sequence[str | int]) -> Any:
    value: Any = found
    for key in path:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


def ratios(monitor: dict[str, Any], fleet: dict[str, Any]) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    for label, path in FIGURES.items():
        a, b = pick(monitor, path), pick(fleet, path)
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        found[label] = round(a / b, 2) if numbers and a and b else None
    return found


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """min / median / max of every figure, each side, and of the ratio within a run."""

    def spread(values: list[Any]) -> list[float] | None:
        numbers = [v for v in values if isinstance(v, int | float)]
        return [min(numbers), statistics.median(numbers), max(numbers)] if numbers else None

    return {
        label: {
            "monitor": spread([pick(r["monitor"], path) for r in runs]),
            "fleet": spread([pick(r["fleet"], path) for r in runs]),
            "ratio": spread([r["ratios"][label] for r in runs]),
        }
        for label, path in FIGURES.items()
    }


def machine() -> str:
    cpus = os.cpu_count()
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    return f"{cpus} cores ({model}), shared; Python {sys.version.split()[0]}"


def git_head() -> str:
    """The commit measured: ``BENCH_GIT_COMMIT`` when the tree is an export (``git archive``)."""
    if os.environ.get("BENCH_GIT_COMMIT"):
        return os.environ["BENCH_GIT_COMMIT"]
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()


def table(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        f"# side by side, N = {meta['endpoints']}, {meta['cluster']}: {len(report['runs'])} runs, "
        f"{meta['date']}, git {meta['git']}",
        f"# machine: {meta['machine']}",
        f"# command: {meta['command']}",
        "# loads (1-min) before each side: "
        + "; ".join(
            f"run {i + 1}: " + ", ".join(f"{w} {r[w]['meta']['load_before'][0]}" for w in r["order"])
            for i, r in enumerate(report["runs"])
        ),
        f"{'figure':<34} {'monitor min/med/max':>26} {'gco-tasks min/med/max':>26} {'ratio min/med/max':>22}",
    ]

    def cell(values: list[float] | None) -> str:
        return " / ".join(f"{v:,.4g}" for v in values) if values else "-"

    for label, row in report["summary"].items():
        if row["monitor"] is None and row["fleet"] is None:
            continue
        lines.append(
            f"{label:<34} {cell(row['monitor']):>26} {cell(row['fleet']):>26} {cell(row['ratio']):>22}"
        )
    lines.append("requests by verb, median over the runs (monitor | gco-tasks):")
    for phase in ("cold", "steady", "change_1pct", "change_100"):
        sides = []
        for which in ("monitor", "fleet"):
            path = ("steady", "cycles", 0, "k8s_by_verb") if phase == "steady" else (phase, "k8s_by_verb")
            counts = [pick(r[which], path) or {} for r in report["runs"]]
            verbs = sorted({verb for count in counts for verb in count})
            sides.append(", ".join(f"{v} {statistics.median(c.get(v, 0) for c in counts):g}" for v in verbs))
        if any(sides):
            lines.append(f"  {phase:<12} {sides[0] or '-'} | {sides[1] or '-'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidebyside", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "side"):
        sub = commands.add_parser(name)
        sub.add_argument("--endpoints", type=int, default=200)
        sub.add_argument("--cluster", choices=("standin", "real"), default="standin")
        sub.add_argument("--write-rate", type=float, default=500.0, help="KUBE_WRITE_RATE (500)")
        sub.add_argument(
            "--cold-interval", type=float, default=2, help="the interval of the cold start (2 s)"
        )
        sub.add_argument(
            "--interval", type=int, default=15, help="RECONCILE_INTERVAL_SECONDS of steady/change"
        )
        sub.add_argument("--cycles", type=int, default=3)
        sub.add_argument("--changes", default="0.01,100", help="fractions (with a dot) or counts of images")
        sub.add_argument("--ready-delay", type=float, default=1.0)
        if name == "run":
            sub.add_argument("--runs", type=int, default=3)
            sub.add_argument("--tag", default="")
        else:
            sub.add_argument("--which", choices=("monitor", "fleet"), required=True)
    report_cmd = commands.add_parser("report")
    report_cmd.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "side":
        print(json.dumps(side(args)))
        return 0
    if args.command == "report":
        for path in args.files or sorted(RESULTS.glob("sidebyside-*.json")):
            print(table(json.loads(path.read_text())) + "\n")
        return 0
    report = run(args)
    stem = f"sidebyside-{args.endpoints}-{args.cluster}{'-' + args.tag if args.tag else ''}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.txt").write_text(table(report) + "\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
