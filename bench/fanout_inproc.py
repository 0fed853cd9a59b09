"""The fan-out's own work at N endpoints, in one process, with fakes for the table, the cluster and
Redis: decode, render, triage and publish, without any service's time (issue 26, item 3).

Where it stands: beside the fleet, a cheap first look before ``bench.scale``'s end-to-end runs. The
table's pages are DynamoDB's wire format decoded by the product's own ``decode_item``; the LIST pages
are JSON text parsed per cycle (as the gateway does), objects shaped as the API server returns them
(uid, resourceVersion, generation, a ready status). The records start converged (their statuses as
a reconcile would have written them), so a steady cycle should send only resync slots.

    python -m bench.fanout_inproc --endpoints 10000 [--cycles 4] [--profile PATH] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from bench.common import REGION, endpoint_mix
from bench.procs import rss_of_tree
from gco_tasks.adapters.dynamo_client import decode_item, encode
from gco_tasks.core.config import load_settings
from gco_tasks.core.conventions import MANAGED_KINDS
from gco_tasks.core.diagnosis import judge_rollouts as digest_rollouts
from gco_tasks.core.fields import iso_now
from gco_tasks.core.records import Endpoint, RecordHeader, parse_spec
from gco_tasks.core.rendering import RenderOptions, desired_objects
from gco_tasks.core.status import outcome_of, region_status_of, status_report
from gco_tasks.core.teardown import plan_around_terminating
from gco_tasks.core.triage_cache import digest
from gco_tasks.flows import fanout

PAGE = 1000


def live_of(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server would list it once applied and ready."""
    live = json.loads(json.dumps(obj))
    meta = live["metadata"]
    meta.update(uid=str(uuid.uuid4()), resourceVersion=str(uuid.uuid4().int % 10**9), generation=1)
    meta["managedFields"] = [{"manager": "gco-tasks", "operation": "Apply", "apiVersion": "v1"}]
    meta["creationTimestamp"] = "2026-12-01T00:00:00Z"
    if live["kind"] == "Deployment":
        replicas = live["spec"].get("replicas", 1)
        live["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        }
    return live


def converged_status(
    item: dict[str, Any], live: list[dict[str, Any]], options: RenderOptions, synced: str | None = None
) -> Any:
    """The region status a reconcile would have written for ``item`` with ``live`` in place."""
    endpoint = Endpoint.from_item(item)
    wanted = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(endpoint, REGION, options)}
    observed = [digest(o, "x", lambda o=o: wanted.get((o["kind"], o["metadata"]["name"]))) for o in live]
    plan, _ = plan_around_terminating(list(wanted.values()), observed)
    outcome = outcome_of(endpoint, REGION, observed, plan, None, (), digest_rollouts(observed))
    report = status_report(outcome)
    assert report is not None
    status = region_status_of(report, RecordHeader.from_item(item).updated_at).to_dict()
    status["last_sync"] = synced or iso_now()
    return status


class World:
    """N converged endpoints: the table as raw DynamoDB items, the cluster as JSON LIST pages."""

    def __init__(self, count: int, options: RenderOptions, synced: str | None = None) -> None:
        raw_items: list[dict[str, Any]] = []
        by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in MANAGED_KINDS}
        for bench in endpoint_mix(count):
            item = Endpoint.new(bench.name, parse_spec(bench.spec), [REGION]).to_item()
            if bench.kind == "stopped":
                item["desired_state"] = "stopped"
            else:
                item["desired_state"] = "running"
            live = [live_of(o) for o in desired_objects(Endpoint.from_item(item), REGION, options)]
            for obj in live:
                by_kind[obj["kind"]].append(obj)
            item["region_status"] = {REGION: converged_status(item, live, options, synced)}
            raw_items.append(encode(item)["M"])
        self.pages = [raw_items[i : i + PAGE] for i in range(0, len(raw_items), PAGE)]
        self.lists = {
            kind: [json.dumps({"items": objs[i : i + PAGE]}) for i in range(0, len(objs), PAGE)]
            for kind, objs in by_kind.items()
        }
        self.objects = sum(len(objs) for objs in by_kind.values())


class Store:
    def __init__(self, world: World) -> None:
        self.world = world

    def scan_items(self, target_region: str | None = None) -> Iterator[dict[str, Any]]:
        for page in self.world.pages:
            yield from [decode_item(raw) for raw in page]


class Cluster:
    def __init__(self, world: World) -> None:
        self.world = world

    def list_pages(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> Iterator[Any]:
        for kind in kinds:
            for text in self.world.lists[kind]:
                items = json.loads(text)["items"]
                for obj in items:
                    obj["kind"] = kind
                yield items

    def list_objects(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> list[dict[str, Any]]:
        return [obj for page in self.list_pages(label_selector, kinds) for obj in page]


class State:
    def __init__(self) -> None:
        self.cycles: set[int] = set()

    @contextlib.contextmanager
    def fan_out_lock(self, ttl_seconds: float) -> Iterator[bool]:
        yield True

    def mark_pending_many(self, names: Iterable[str], ttl_seconds: int) -> dict[str, bool]:
        return dict.fromkeys(names, True)

    def withheld(self) -> set[str]:
        return set()

    def note_paths(
        self, paths: Mapping[str, str], now: float, serving: Mapping[str, float] | None = None
    ) -> dict[str, tuple[str, float]]:
        return {name: (path, (serving or {}).get(name, now)) for name, path in paths.items()}

    def claim_cycle(self, cycle: int, ttl_seconds: int) -> bool:
        first = cycle not in self.cycles
        self.cycles.add(cycle)
        return first

    def requeue_marks(self, names: Iterable[str]) -> dict[str, tuple[float, float]]:
        return {}  # no rollout backoff running: the bench's records are all settled or new


class Ports:
    def __init__(self, world: World, options: RenderOptions) -> None:
        self.settings = load_settings({}, region=REGION, reconcile_interval_seconds=15)
        self.store = Store(world)
        self.cluster = Cluster(world)
        self.state = State()
        self.render_options = options
        self.configurations_run: set[tuple[str, str]] = set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout_inproc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--endpoints", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=4, help="fan-outs, 15 s of clock apart (4)")
    parser.add_argument("--profile", default=None, help="cProfile the warm cycles into this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    options = RenderOptions()
    began = time.perf_counter()
    world = World(args.endpoints, options)
    built = time.perf_counter() - began
    rss_built = rss_of_tree(os.getpid())
    ports = Ports(world, options)
    sent: Counter[str] = Counter()

    def send(name: str, snapshot: dict[str, Any]) -> None:
        json.dumps([name, snapshot])  # what publishing serialises
        sent[str(snapshot.get("reason"))] += 1

    now = datetime.now(UTC).timestamp()
    cycles: list[dict[str, Any]] = []
    profiler = cProfile.Profile() if args.profile else None
    for index in range(args.cycles):
        sent.clear()
        if profiler and index > 0:
            profiler.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fanout.fan_out(ports, send, now=now + 15 * index)  # type: ignore[arg-type]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiler and index > 0:
            profiler.disable()
        cycles.append(
            {
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "sent": dict(sent),
                "in_sync": result.in_sync,
                "split_seconds": result.seconds,
            }
        )
    warm = [c["cpu_seconds"] for c in cycles[1:]] or [cycles[0]["cpu_seconds"]]
    report: dict[str, Any] = {
        "endpoints": args.endpoints,
        "objects": world.objects,
        "build_seconds": round(built, 1),
        "cycles": cycles,
        "first_cpu_seconds": cycles[0]["cpu_seconds"],
        "warm_cpu_seconds": {"min": min(warm), "median": statistics.median(warm), "max": max(warm)},
        "rss_mb_built": rss_built,
        "rss_mb_after": rss_of_tree(os.getpid()),
    }
    if profiler and args.profile:
        profiler.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        report["profile_top"] = text.getvalue().splitlines()[:45]
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
