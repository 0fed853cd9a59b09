"""What the fan-out's reads cost at N endpoints, and what each measure of issue 13 changed: the Scan (one
segment or parallel segments), the LISTs (pages of 500 or 1,000, the collector paused or not while
decoding, objects slimmed or not) and the memory of holding them.

Where it stands: beside the fleet (a benchmark of two adapters, ``store.EndpointStore.scan_items`` and
``cluster.ClusterGateway.list_objects``, exactly as the fan-out calls them). moto and the sandbox API
server (a stand-in) run in processes of their own (``bench.procs``); the table is seeded with
BatchWriteItem and the cluster with the rendered objects of every endpoint (server-side apply, the
stand-in without schema validation to seed faster). Each variant runs ``--repeat`` times (median);
memory is what the result holds once read (tracemalloc, in a separate run of each variant).

    .venv/bin/python -m bench.reads --endpoints 1000 10000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes

from bench.common import REGION, endpoint_mix
from bench.procs import ProcServices, create_table, process_services, seed_records
from gco_tasks.adapters import cluster, gcpause
from gco_tasks.adapters.dynamo_client import scan_segments_for
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import MANAGED_SELECTOR
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint


def seed_cluster(gateway: cluster.ClusterGateway, count: int) -> float:
    """Every endpoint's rendered objects applied (8 threads); the seconds it took."""
    options = RenderOptions.from_settings(load_settings({"REGION": REGION}))
    objects = [
        obj
        for e in endpoint_mix(count)
        if e.kind != "stopped"
        for obj in render_endpoint(Endpoint.new(e.name, parse_spec(e.spec), [REGION]), REGION, options)
    ]
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(gateway.apply, objects):
            pass
    return time.perf_counter() - began


@contextlib.contextmanager
def variant(page: int, paused: bool, slimmed: bool) -> Iterator[None]:
    """The gateway as it reads with these choices (module attributes patched, then restored)."""
    saved = (cluster.LIST_PAGE_SIZE, gcpause.paused, cluster.slim)
    cluster.LIST_PAGE_SIZE = page
    if not paused:
        gcpause.paused = contextlib.nullcontext
    if not slimmed:
        cluster.slim = lambda obj: obj
    try:
        yield
    finally:
        cluster.LIST_PAGE_SIZE, gcpause.paused, cluster.slim = saved


def timed(read: Callable[[], list[Any]], repeat: int) -> dict[str, Any]:
    """Median seconds of ``read``, then (separately) the memory its result holds."""
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        found = read()
        seconds.append(time.perf_counter() - began)
        del found
    gc.collect()
    tracemalloc.start()
    found = read()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "seconds": round(statistics.median(seconds), 3),
        "items": len(found),
        "held_mb": round(held / 1e6, 1),
    }


def measure(services: ProcServices, count: int, repeat: int) -> dict[str, Any]:
    client = services.client()
    create_table(client)
    seeded = {"records_seconds": round(seed_records(client, endpoint_mix(count)), 1)}
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=services.cluster.url))
    gateway = cluster.ClusterGateway(api, "gco-inference", timeout_seconds=120)
    seeded["objects_seconds"] = round(seed_cluster(gateway, count), 1)
    store = EndpointStore.from_settings(load_settings(services.env()))
    results: dict[str, Any] = {"seed": seeded, "scan": {}, "list": {}}
    for segments in (1, 0):
        store.segments, store.last_scan_bytes = segments, 0
        list(store.scan_items())  # the auto choice learns the table's size from a first full Scan
        used = segments or scan_segments_for(store.last_scan_bytes)
        services.dynamo_reset()
        row = timed(lambda: list(store.scan_items()), repeat)
        row["moto_scan_seconds"] = round(
            services.dynamo_stats()["seconds"].get("Scan", 0.0) / (repeat + 1), 3
        )
        label = "1 segment" if segments == 1 else f"auto: {used} segment{'s' if used > 1 else ''}"
        results["scan"][label] = row
    for page, paused, slimmed in (
        (500, False, False),
        (1000, False, False),
        (1000, True, False),
        (1000, True, True),
    ):
        name = f"pages of {page}, collector {'paused' if paused else 'on'}, {'slim' if slimmed else 'whole'}"
        with variant(page, paused, slimmed):
            results["list"][name] = timed(lambda: gateway.list_objects(MANAGED_SELECTOR), repeat)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    for count in args.endpoints:
        with (
            tempfile.TemporaryDirectory(prefix="gco-reads-") as tmp,
            process_services(Path(tmp), 0.0, validate=False) as services,
        ):
            os.environ.update(services.env())
            report[str(count)] = measure(services, count, args.repeat)
        print(json.dumps({count: report[str(count)]}), flush=True)
    out = Path(__file__).resolve().parent / "results" / "reads.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
