"""Scale benchmark (issue 13): N endpoints in one region through real worker processes
(``celery worker -c 2``: 2 prefork processes), moto's DynamoDB and the sandbox API server (a local
stand-in), each service in a process of its own.

Where it stands: beside the fleet, never imported by it. ``run`` measures one N and writes
``bench/results/scale-<N>[-<tag>].json``; ``report`` reads those files and prints the Targets table of
issue 13 (medians) and writes the growth plot ``bench/results/scale.png``.

A run, in order: the table seeded directly (BatchWriteItem, not counted); a worker with
``KUBE_WRITE_RATE`` (500/s unless ``--write-rate``); **cold start**: a fan-out every interval as beat
would, until every endpoint reports its final state, with the Kubernetes write rate over time;
**steady** cycles, one after the other: Kubernetes requests, DynamoDB writes, messages, fan-out time;
**change** of 1 % of the images at random moments over one interval, beat running: write -> Deployment
applied; the worker's memory; then optionally **short** interval cycles (a worker restarted with
``RECONCILE_INTERVAL_SECONDS`` = ``--short-interval``) and the **probe**: one fan-out in a fresh process,
timed per port call, with its memory and a cProfile.

    .venv/bin/python -m bench.scale run --endpoints 1000 [--phases cold,steady,change,probe]
    .venv/bin/python -m bench.scale report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import PROJECT_ROOT, endpoint_mix
from bench.observe import Events
from bench.phases import Bench, change, cold_start, short_interval, steady, wait_quiet
from bench.procs import ProcServices, create_table, process_services, rss_of_tree, seed_records
from bench.worker import WorkerProcess

RESULTS = PROJECT_ROOT / "bench" / "results"
PHASES = ("cold", "steady", "change", "short", "probe")
log = logging.getLogger("bench.scale")


def start_worker(bench: Bench, settings: dict[str, str], name: str) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "REDIS", "RECONCILE"))}
    env.update(bench.services.env(**settings))
    bench.events.online = False
    worker = WorkerProcess(env, bench.services.workdir / f"{name}.log")
    if not bench.events.wait(lambda: bench.events.online, timeout=120):
        raise RuntimeError(f"the worker did not come online:\n{worker.log_tail()}")
    bench.pid = worker.process.pid
    return worker


def probe(services: ProcServices, settings: dict[str, str], *options: str) -> dict[str, Any]:
    """One fan-out in a fresh process (``bench.fanout_probe``), the worker stopped."""
    env = {**os.environ, **services.env(**settings), "PYTHONPATH": str(PROJECT_ROOT)}
    services.dynamo_reset()
    run = subprocess.run(
        [sys.executable, "-m", "bench.fanout_probe", *options],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if run.returncode != 0:
        raise RuntimeError(f"fan-out probe failed:\n{run.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    report["moto"] = services.dynamo_stats()
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = set(args.phases.split(","))
    settings = {"KUBE_WRITE_RATE": str(args.write_rate), "RECONCILE_INTERVAL_SECONDS": str(args.interval)}
    if args.write_rate is None:
        settings.pop("KUBE_WRITE_RATE")
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "endpoints": args.endpoints,
            "write_rate": args.write_rate or "default",
            "interval": args.interval,
            "ready_delay": args.ready_delay,
            "cluster": args.cluster,
            "standin_validation": not args.no_validation,
            "load_before": os.getloadavg()[0],
        }
    }
    real_gpus = args.endpoints * 6 // 5 + 8 if args.cluster == "real" else 0  # canaries need GPUs too
    with (
        tempfile.TemporaryDirectory(prefix="gco-scale-") as tmp,
        process_services(Path(tmp), args.ready_delay, real_gpus, validate=not args.no_validation) as services,
    ):
        for key in [key for key in os.environ if key.startswith(("KUBE", "REDIS"))]:
            del os.environ[key]
        os.environ.update(services.env(**settings))
        mix = endpoint_mix(args.endpoints)
        client = services.client()
        create_table(client)
        if args.seeded:  # the region converged by the bench itself: no cold start
            from bench.seeding import seed_converged

            report["meta"]["seeded"] = seed_converged(client, mix)
        else:
            report["meta"]["seed_seconds"] = round(seed_records(client, mix), 1)
        from gco_tasks.adapters.store import EndpointStore
        from gco_tasks.core.config import load_settings
        from gco_tasks.worker import tasks
        from gco_tasks.worker.app import app

        store = EndpointStore.from_settings(load_settings())
        broker = redis.Redis.from_url(services.redis.url)
        bench = Bench(services, Events(app).start(), tasks, broker, mix, store)
        worker = start_worker(bench, settings, "worker")
        try:
            report.update(measure(bench, args, phases))
            report["worker_rss_mb"] = rss_of_tree(bench.pid)
        finally:
            worker.stop()
        if "short" in phases:
            short = {**settings, "RECONCILE_INTERVAL_SECONDS": str(args.short_interval)}
            worker = start_worker(bench, short, "worker-short")
            try:
                report["short"] = short_interval(bench, args.short_interval, args.short_cycles)
            finally:
                worker.stop()
        if "probe" in phases:
            profile = (args.out.parent if args.out else RESULTS) / f"fanout-{args.endpoints}.prof"
            profile.parent.mkdir(parents=True, exist_ok=True)
            report["probe"] = probe(services, settings)
            if not args.one_probe:
                report["probe_collector_on"] = probe(services, settings, "--collector-on")
                report["probe_profiled"] = probe(services, settings, "--profile", str(profile))
        bench.events.stop()
    report["meta"]["load_after"] = os.getloadavg()[0]
    return report


def measure(bench: Bench, args: argparse.Namespace, phases: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    timeout = 600 + args.endpoints * 0.5
    if args.seeded:
        pass  # the bench converged the region itself (bench.seeding)
    elif "cold" in phases:
        found["cold"] = cold_start(bench, args.interval, timeout)
        log.warning("cold start: %s s", found["cold"]["seconds"])
    else:
        cold_start(bench, args.interval, timeout)
    wait_quiet(bench)
    if "steady" in phases:
        found["steady"] = steady(bench, args.cycles)
        log.warning("steady: %s", found["steady"]["median"])
    if "change" in phases:
        found["change"] = change(bench, 0.01, args.interval)
        log.warning("change: %s", found["change"])
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="measure one N; writes bench/results/scale-<N>[-<tag>].json")
    one.add_argument("--endpoints", type=int, default=1000)
    one.add_argument("--write-rate", type=float, default=500.0, help="KUBE_WRITE_RATE (0: the default)")
    one.add_argument("--interval", type=int, default=15, help="RECONCILE_INTERVAL_SECONDS (15)")
    one.add_argument("--cycles", type=int, default=3, help="steady cycles (3)")
    one.add_argument("--phases", default="cold,steady,change,probe", help=f"of {','.join(PHASES)}")
    one.add_argument("--short-interval", type=int, default=2)
    one.add_argument("--short-cycles", type=int, default=10)
    one.add_argument("--ready-delay", type=float, default=1.0)
    one.add_argument("--cluster", choices=("standin", "real"), default="standin")
    one.add_argument(
        "--no-validation", action="store_true", help="the stand-in skips schema validation (its own cost)"
    )
    one.add_argument(
        "--seeded",
        action="store_true",
        help="no cold start: the bench applies every object and writes the converged statuses itself",
    )
    one.add_argument("--one-probe", action="store_true", help="the probe once (no A/B, no profile)")
    one.add_argument("--tag", default="")
    one.add_argument("--out", type=Path, default=None, help="write the JSON here instead of bench/results")
    report_cmd = commands.add_parser("report", help="the Targets table and the plot from the results")
    report_cmd.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "report":
        from bench.scale_report import main as report_main

        return report_main(args.files or sorted(RESULTS.glob("scale-*.json")))
    if args.write_rate == 0:
        args.write_rate = None
    began = time.perf_counter()
    report = run(args)
    report["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)
    path = args.out or RESULTS / f"scale-{args.endpoints}{'-' + args.tag if args.tag else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("probe")}, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
