"""One fan-out, run directly in a fresh process of its own, timed by port call and profiled: where its
time and memory go at N endpoints.

Where it stands: beside the fleet; ``bench.scale`` runs it as a subprocess (with the worker stopped)
on the same services, and reads the JSON it prints. The fan-out is the product's (``fanout.fan_out``
with the task's own sender, publishing to the broker); only its ports are wrapped, to time each call
(``scan_items`` and ``list_pages`` are timed while they are consumed). Memory: the process's peak
resident set (VmHWM) before and after the fan-out. ``--profile PATH`` writes cProfile's stats there
and prints the top functions.

    python -m bench.fanout_probe [--profile bench/results/fanout.prof]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.procs import rss_of_tree
from gco_tasks.core.hint import Hint
from gco_tasks.core.ports import Sender


class Timed:
    """A proxy that times every method call of ``target`` under ``prefix.method``."""

    def __init__(self, target: Any, prefix: str, times: Counter[str]) -> None:
        self._target, self._prefix, self._times = target, prefix, times

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        key = f"{self._prefix}.{name}"

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            result = value(*args, **kwargs)
            self._times[key] += time.perf_counter() - began
            if isinstance(result, Iterator):
                return self._consumed(result, key)  # timed as consumed: pages stay streamed
            return result

        return timed

    def _consumed(self, source: Iterator[Any], key: str) -> Iterator[Any]:
        while True:
            began = time.perf_counter()
            try:
                value = next(source)
            except StopIteration:
                self._times[key] += time.perf_counter() - began
                return
            self._times[key] += time.perf_counter() - began
            yield value


class TimedPorts:
    """The fleet as ``fan_out`` sees it, each adapter behind a ``Timed`` proxy."""

    def __init__(self, fleet: Any, times: Counter[str]) -> None:
        self.settings = fleet.settings
        self.store = Timed(fleet.store, "dynamodb", times)
        self.cluster = Timed(fleet.cluster, "kubernetes", times)
        self.state = Timed(fleet.state, "redis", times)
        self.render_options = fleet.render_options
        self.configurations_run = fleet.configurations_run


def timed_sender(send: Sender, times: Counter[str]) -> Any:
    def wrapped(name: str, hint: Hint | None) -> None:
        began = time.perf_counter()
        send(name, hint)
        times["broker.send"] += time.perf_counter() - began
        times["broker.messages"] += 1

    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument(
        "--collector-on", action="store_true", help="do not pause the garbage collector while decoding (A/B)"
    )
    args = parser.parse_args()
    if args.collector_on:
        from gco_tasks.adapters import gcpause

        gcpause.paused = contextlib.nullcontext  # type: ignore[assignment]
    from gco_tasks.core.config import load_settings
    from gco_tasks.flows import fanout
    from gco_tasks.worker import tasks
    from gco_tasks.worker.fleet import Fleet

    fleet = Fleet.from_settings(load_settings())
    for _ in range(60):  # a stopped worker's fan-out lock lapses with its lease: wait for it
        with fleet.state.fan_out_lock(ttl_seconds=5) as free:
            if free:
                break
        time.sleep(1.0)
    times: Counter[str] = Counter()
    ports = TimedPorts(fleet, times)
    before = rss_of_tree_self()
    profiler = cProfile.Profile() if args.profile else None
    began = time.perf_counter()
    with tasks._reconcile_sender(fleet) as reconcile_sender:
        send = timed_sender(reconcile_sender, times)
        if profiler:
            profiler.enable()
        result = fanout.fan_out(ports, send)
        if profiler:
            profiler.disable()
    total = time.perf_counter() - began
    after = rss_of_tree_self()
    report: dict[str, Any] = {
        "seconds": round(total, 3),
        "calls_seconds": {key: round(value, 3) for key, value in sorted(times.items())},
        "result": {k: v for k, v in result.as_dict().items() if k != "orphans"},
        "rss_mb_before": before,
        "rss_mb_after": after,
    }
    if profiler and args.profile:
        profiler.dump_stats(str(args.profile))
        report["profile_top"] = top_functions(profiler)
    print(json.dumps(report))


def rss_of_tree_self() -> dict[str, int]:
    return rss_of_tree(os.getpid())[str(os.getpid())]


def top_functions(profiler: cProfile.Profile, count: int = 25) -> list[str]:
    """The functions with the most time of their own, as cProfile prints them."""
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(count)
    lines = [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return lines[start : start + count + 1]


if __name__ == "__main__":
    main()
