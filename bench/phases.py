"""The phases of the scale benchmark, each against real worker processes on ``bench.procs``' services:
a cold start, steady cycles, a change of 1 % of the images, and cycles at a short interval.

Where it stands: beside the fleet, driven by ``bench.scale``. Every phase reads the workers' task events
(``bench.observe.Events``) for what happened and when, and the services' counters for what it cost.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.common import CYCLE_QUEUE, NEW_IMAGE, QUEUE, BenchEndpoint, percentile
from bench.observe import FAN_OUT, RECONCILE, Events, RequestPoller, Ticker, write_rates
from bench.procs import ProcServices, cpu_seconds, pool_pids
from gco_tasks.adapters.store import EndpointStore

DYNAMO_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


@dataclass
class Bench:
    """What every phase works with."""

    services: ProcServices
    events: Events
    tasks: Any  # gco_tasks.worker.tasks, imported once the environment points at the services
    broker: Any  # a redis client on the broker
    mix: Sequence[BenchEndpoint]
    store: EndpointStore
    pid: int = 0  # the worker's main process
    notes: list[str] = field(default_factory=list)

    def fan_out(self, expires: float) -> None:
        self.tasks.fan_out.apply_async(queue=CYCLE_QUEUE, expires=expires)  # as beat sends it


def note_applied(bench: Bench, mark: int, written: dict[str, float], applied: dict[str, float]) -> None:
    """Into ``applied``: when each endpoint of ``written`` (name -> when its record was written) first
    had its Deployment applied by a reconcile that finished after that write (task events since
    ``mark``)."""
    for event in bench.events.finished[mark:]:
        name = (event.result or {}).get("endpoint")
        actions = (event.result or {}).get("actions") or []
        if name in written and f"apply Deployment/{name}" in actions and event.at >= written[name]:
            applied.setdefault(name, event.at)


def cpu_now(bench: Bench) -> dict[str, float]:
    """CPU seconds used so far by each part: the services, the worker's processes, this benchmark."""
    named = {**bench.services.component_pids(), "worker main": bench.pid, "benchmark": os.getpid()}
    named.update({f"worker pool {i + 1}": pid for i, pid in enumerate(pool_pids(bench.pid))})
    used = cpu_seconds(list(named.values()))
    return {name: used[str(pid)] for name, pid in named.items() if str(pid) in used}


def cpu_since(bench: Bench, before: dict[str, float]) -> dict[str, float]:
    after = cpu_now(bench)
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}


class Progress:
    """Each endpoint's latest reported state, read incrementally from the reconcile events."""

    def __init__(self, events: Events, mix: Sequence[BenchEndpoint]) -> None:
        self.events, self.cursor = events, events.mark()
        self.final = {e.name: "stopped" if e.kind == "stopped" else "running" for e in mix}
        self.state: dict[str, str] = {}
        self.done: set[str] = set()
        self.last_at = 0.0

    def update(self) -> bool:
        """Called under the events' lock: True once every endpoint is in its final state."""
        finished = self.events.finished
        while self.cursor < len(finished):
            event = finished[self.cursor]
            self.cursor += 1
            if event.name != RECONCILE or not event.result:
                continue
            name, state = event.result.get("endpoint"), event.result.get("state")
            if name in self.final and state:
                self.state[name] = state
                if state == self.final[name]:
                    if name not in self.done:
                        self.last_at = max(self.last_at, event.at)
                    self.done.add(name)
                else:
                    self.done.discard(name)
        return len(self.done) == len(self.final)


def wait_quiet(bench: Bench, quiet: float = 3.0, timeout: float = 1800.0) -> None:
    """Until the queue is empty and no task has finished for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = bench.events.mark()
        time.sleep(quiet)
        idle = bench.events.mark() == mark and bench.events.in_flight() == 0
        if idle and int(bench.broker.llen(QUEUE)) + int(bench.broker.llen(CYCLE_QUEUE)) == 0:
            return
    raise RuntimeError(f"the workers did not go quiet in {timeout:.0f}s")


def per_process(
    bench: Bench, reconciles: int, seconds: float, cpu_before: dict[str, float]
) -> dict[str, Any]:
    """Reconciles per second per pool process (task events do not say which pool process ran a task:
    the total over the processes), and each process's CPU use over the phase (how evenly they worked)."""
    cpu_after = cpu_seconds(pool_pids(bench.pid))
    busy = {pid: round((cpu_after[pid] - cpu_before.get(pid, 0.0)) / seconds, 2) for pid in cpu_after}
    processes = max(1, len(cpu_after))
    return {
        "processes": processes,
        "reconciles_per_second_per_process": round(reconciles / seconds / processes, 1),
        "cpu_busy_fraction": busy,
    }


def cold_start(bench: Bench, interval: float, timeout: float) -> dict[str, Any]:
    """From the first fan-out to every endpoint in its final state (running, or stopped), with beat's
    cadence (a fan-out every ``interval``); the Kubernetes write rate over time."""
    bench.services.k8s_reset()
    bench.services.dynamo_reset()
    poller = RequestPoller(bench.services.k8s_stats).start()
    progress = Progress(bench.events, bench.mix)
    mark = bench.events.mark()
    cpu_before = cpu_seconds(pool_pids(bench.pid))
    cpu_parts = cpu_now(bench)
    began = time.time()
    ticker = Ticker(bench.fan_out, interval).start()
    try:
        if not bench.events.wait(progress.update, timeout, poll=0.5):
            missing = len(progress.final) - len(progress.done)
            raise RuntimeError(
                f"cold start: {missing} endpoints not in their final state after {timeout:.0f}s"
            )
    finally:
        ticker.stop()
    seconds = progress.last_at - began
    cpu = cpu_since(bench, cpu_parts)
    wait_quiet(bench)
    samples = poller.stop()
    finished = [f for f in bench.events.since(mark) if f.at <= progress.last_at]
    reconciles = [f for f in finished if f.name == RECONCILE]
    return {
        "seconds": round(seconds, 2),
        "fan_outs": len([f for f in finished if f.name == FAN_OUT]),
        "reconciles": len(reconciles),
        "failed": sum(f.failed for f in reconciles),
        "per_process": per_process(bench, len(reconciles), seconds, cpu_before),
        "endpoints_per_second": round(len(bench.mix) / seconds, 1),
        "k8s_writes_per_second": write_rates(samples, 1.0),
        "k8s_writes_per_second_5s": write_rates(samples, 5.0),
        "k8s_requests": bench.services.k8s_stats(),
        "dynamo": bench.services.dynamo_stats(),
        "cpu_seconds": cpu,
    }


def steady(bench: Bench, cycles: int, timeout: float = 1800.0) -> dict[str, Any]:
    """``cycles`` fan-outs one after the other, each waited for with every reconcile it sent."""
    runs = []
    cpu_parts = cpu_now(bench)
    for _ in range(cycles):
        bench.services.k8s_reset()
        bench.services.dynamo_reset()
        wait_quiet(bench)  # no fan-out of an earlier phase still holding the region's fan-out lock
        mark = bench.events.mark()
        began = time.time()
        fanned = _one_fan_out(bench, mark, timeout)
        sent = int((fanned.result or {}).get("sent", 0))
        if not bench.events.wait(lambda m=mark, s=sent: len(bench.events.since(m, RECONCILE)) >= s, timeout):
            raise RuntimeError(f"steady: {sent} reconciles did not finish")
        done = bench.events.since(mark, RECONCILE)
        end = max([fanned.at, *(f.at for f in done)])
        k8s, dynamo = bench.services.k8s_stats(), bench.services.dynamo_stats()
        runs.append(
            {
                "messages": sent,
                "fan_out_seconds": round(fanned.runtime, 3),
                "cycle_seconds": round(end - began, 3),
                "k8s_requests": sum(k8s.values()),
                "k8s_by_verb": _by_verb(k8s),
                "k8s_writes": sum(n for verb, n in _by_verb(k8s).items() if verb != "list" and verb != "get"),
                "dynamo_writes": sum(int(dynamo["calls"].get(op, 0)) for op in DYNAMO_WRITES),
                "dynamo_calls": dynamo["calls"],
                "moto_scan_seconds": dynamo["seconds"].get("Scan", 0.0),
                "fan_out_result": fanned.result,
            }
        )
    return {"cycles": runs, "median": _medians(runs), "cpu_seconds_all_cycles": cpu_since(bench, cpu_parts)}


def _one_fan_out(bench: Bench, mark: int, timeout: float) -> Any:
    """A fan-out that ran (not one skipped because another held the lock), sent again if skipped."""

    def ran() -> list[Any]:
        return [f for f in bench.events.since(mark, FAN_OUT) if f.result and "skipped" not in f.result]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = len(bench.events.since(mark, FAN_OUT))
        bench.fan_out(expires=60)
        left = deadline - time.monotonic()
        bench.events.wait(lambda n=finished: bool(ran()) or len(bench.events.since(mark, FAN_OUT)) > n, left)
        if ran():
            return ran()[0]
        time.sleep(1.0)  # skipped: another fan-out was running; ask again
    raise RuntimeError("steady: no fan-out ran")


def change(bench: Bench, fraction: float, interval: float, seed: int = 13) -> dict[str, Any]:
    """Edit the image of ``fraction`` of the endpoints at random moments over one interval, with beat's
    cadence running; for each, the time from its write to the reconcile that applied its Deployment."""
    eligible = [e.name for e in bench.mix if e.kind != "stopped"]
    rng = random.Random(seed)
    edited = sorted(rng.sample(eligible, max(1, round(len(bench.mix) * fraction))))
    moments = sorted(rng.uniform(0, interval) for _ in edited)
    mark = bench.events.mark()
    ticker = Ticker(bench.fan_out, interval).start()
    written: dict[str, float] = {}
    try:
        start = time.monotonic()
        for name, moment in zip(edited, moments, strict=True):
            time.sleep(max(0.0, start + moment - time.monotonic()))
            bench.store.update_spec(name, lambda spec: spec.with_changes(image=NEW_IMAGE))
            written[name] = time.time()
        applied: dict[str, float] = {}

        def all_applied() -> bool:
            note_applied(bench, mark, written, applied)
            return len(applied) == len(edited)

        if not bench.events.wait(all_applied, timeout=10 * interval + len(bench.mix) / 20, poll=1.0):
            raise RuntimeError(f"change: {len(edited) - len(applied)} Deployments not updated in time")
    finally:
        ticker.stop()
    wait_quiet(bench)
    latencies = [applied[name] - written[name] for name in edited]
    return {
        "edited": len(edited),
        "interval": interval,
        "p50": round(statistics.median(latencies), 2),
        "p99": round(percentile(latencies, 99), 2),
        "max": round(max(latencies), 2),
    }


def short_interval(bench: Bench, interval: float, cycles: int) -> dict[str, Any]:
    """Beat's cadence at ``interval`` seconds for ``cycles`` cycles: LISTs (and GETs) per cycle."""
    bench.services.k8s_reset()
    mark = bench.events.mark()
    ticker = Ticker(bench.fan_out, interval).start()
    time.sleep(interval * cycles)
    ticker.stop()
    wait_quiet(bench)
    k8s = _by_verb(bench.services.k8s_stats())
    fan_outs = [f for f in bench.events.since(mark, FAN_OUT)]
    ran = [f for f in fan_outs if f.result and "skipped" not in f.result]
    return {
        "interval": interval,
        "fan_outs_sent": len(ticker.sent),
        "fan_outs_ran": len(ran),
        "messages": sum(int((f.result or {}).get("sent", 0)) for f in ran),
        "reconciles": len(bench.events.since(mark, RECONCILE)),
        "k8s_by_verb": k8s,
        "lists_per_cycle": round(k8s.get("list", 0) / max(1, len(ticker.sent)), 1),
    }


def _by_verb(stats: dict[str, int]) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for key, count in stats.items():
        verbs[key.split()[0]] += count
    return dict(sorted(verbs.items()))


def _medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = ("messages", "fan_out_seconds", "cycle_seconds", "k8s_requests", "k8s_writes", "dynamo_writes")
    return {key: statistics.median(run[key] for run in runs) for key in keys}
