"""One reconcile cycle of a region: read the table and the cluster once, send a reconcile message only
for the endpoints that need work (``triage``), each with a hint, never the record.

Where it stands in the flow: beat sends ``fan_out`` every ``RECONCILE_INTERVAL_SECONDS``; the messages
go to the region's queue. Cost model (LIST pages streamed, periodic messages capped): docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from gco_tasks.core import conventions as names
from gco_tasks.core.config import Settings
from gco_tasks.core.hint import Hint
from gco_tasks.core.paths import record_paths, serving_since, shadowed_paths
from gco_tasks.core.plan import ObservedObject, objects_by_endpoint
from gco_tasks.core.ports import ClusterPages, FanOutMarks, RecordScan, Sender
from gco_tasks.core.records import RecordHeader
from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.results import FanOutResult
from gco_tasks.core.triage import Cycle, Verdict, due, judge, observe, periodic_budget, triage

log = logging.getLogger(__name__)
T = TypeVar("T")


class FanOutPorts(Protocol):
    """What a fan-out reads and marks (``fleet.Fleet`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> RecordScan: ...
    @property
    def cluster(self) -> ClusterPages: ...
    @property
    def state(self) -> FanOutMarks: ...
    @property
    def render_options(self) -> RenderOptions: ...
    @property
    def configurations_run(self) -> set[tuple[str, str]]:
        """The configurations (region, render options) this process's fan-outs have run under: under one
        not run before (a worker started after its ConfigMap changed) every endpoint whose error is about
        the record as it is now is sent once at once, not at its resync slot."""
        ...


# --------------------------------------------------------------------------- pure decisions


def items_by_name(items: Iterable[Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[list[str]]]:
    """The scanned items by ``endpoint_name``, and the keys of items without a string name (skipped)."""
    by_name: dict[str, dict[str, Any]] = {}
    skipped: list[list[str]] = []
    for item in items:
        name = item.get("endpoint_name")
        if isinstance(name, str) and name:
            by_name[name] = dict(item)
        else:
            skipped.append(sorted(item))
    return by_name, skipped


def verdicts(
    cycle: Cycle, items: Mapping[str, Mapping[str, Any]], grouped: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Verdict]:
    """The triage of every endpoint with a record or with objects here, by name (sorted)."""
    return {
        name: triage(cycle, name, items.get(name), grouped.get(name, []))
        for name in sorted({*items, *grouped})
    }


#: Reasons that only say "look again at how the rollout goes": a rollout backoff answers them.
WAITING_REASONS: frozenset[str] = frozenset({"rollout"})


def held_by_backoff(reason: str, mark: tuple[float, float] | None, now: float) -> bool:
    """Whether a rollout backoff (``mark``: when the endpoint is next due, and when its requeued
    reconcile is) answers ``reason``: a rollout that is not due for another look yet. Anything else the
    fan-out finds (a status to report, a change) is sent; a requeued reconcile still waiting is pending
    like any message (``mark_pending_many`` skips it)."""
    if mark is None or reason not in WAITING_REASONS:
        return False
    due, _ = mark
    return due > now


def make_hint(
    item: Mapping[str, Any] | None, verdict: Verdict, now: float, shadowed_by: str | None = None
) -> Hint:
    """What a reconcile message carries besides the name: the hint (never the record), with the older
    endpoint whose path this one's equals or shadows (``paths``), if the Scan found one."""
    updated_at = item.get("updated_at") if item is not None else None
    version = str(updated_at) if updated_at is not None else None
    return Hint(now, verdict.observed, version, verdict.reason, shadowed_by)


# --------------------------------------------------------------------------- the cycle


def fan_out(ports: FanOutPorts, send: Sender, now: float | None = None) -> FanOutResult:
    """One cycle for the region: read the table and the cluster once, send a message for each endpoint
    that needs work (unless one is already waiting)."""
    now = time.time() if now is None else now
    settings = ports.settings
    with ports.state.fan_out_lock(ttl_seconds=settings.task_time_limit_seconds) as acquired:
        if not acquired:
            return FanOutResult(skipped="another fan-out of this region is running")
        began, began_cpu = time.perf_counter(), time.thread_time()
        waited = {"scan": 0.0, "list": 0.0, "publish": 0.0}
        waited_cpu = {"scan": 0.0, "list": 0.0}
        items, skipped = items_by_name(timed(ports.store.scan_items(), waited, "scan", waited_cpu))
        for keys in skipped:
            log.warning("skipping a table item without a string endpoint_name: keys %s", keys)
        region_items = [
            item for item in items.values() if RecordHeader.from_item(item).targets(settings.region)
        ]
        cycle = _cycle(ports, now, {})  # digests need neither the paths nor the resync claim
        ingresses: dict[str, list[Mapping[str, Any]]] = {}
        pages = timed(ports.cluster.list_pages(names.MANAGED_SELECTOR), waited, "list", waited_cpu)
        observed = observe_pages(cycle, items, pages, ingresses)
        paths = record_paths(region_items)  # seniority: the fleet's first sighting, never created_at
        first_seen = ports.state.note_paths(paths, now, serving_since(paths, ingresses))
        shadowed = shadowed_paths(region_items, first_seen)
        first = _first_of_interval(ports, now)  # claimed once the reads succeeded
        cycle = replace(cycle, shadowed=dict(shadowed), resyncs=first)
        found = judged(cycle, items, observed)
        budget = periodic_budget(len(items), cycle.interval_seconds, cycle.heartbeat_seconds)
        wanted = due(found, budget if cycle.resyncs else 0)
        backoffs = ports.state.requeue_marks(n for n in wanted if found[n].reason in WAITING_REASONS)
        held = {n for n in wanted if held_by_backoff(str(found[n].reason), backoffs.get(n), now)}
        wanted = [n for n in wanted if n not in held]
        published = time.perf_counter()
        marks = ports.state.mark_pending_many(wanted, settings.message_ttl_seconds)
        sent = [name for name in wanted if marks[name]]
        for name in sent:
            send(name, make_hint(items.get(name), found[name], now, shadowed.get(name)))
        waited["publish"] = time.perf_counter() - published
        total, total_cpu = time.perf_counter() - began, time.thread_time() - began_cpu
        ports.configurations_run.add(_configuration(ports))
        pending = len(wanted) - len(sent)
        reasons = Counter(str(found[name].reason) for name in sent)
        log.info(
            "fan-out %s: %d sent %s, %d already pending", settings.region, len(sent), dict(reasons), pending
        )
        orphans = sorted(set(observed) - set(items))
        return FanOutResult(
            records=len(items),
            sent=len(sent),
            already_pending=pending,
            held_by_backoff=len(held),
            in_sync=len(found) - len(wanted) - len(held),
            reasons=dict(reasons),
            orphans=orphans,
            seconds={
                "scan": round(waited["scan"], 3),
                "list": round(waited["list"], 3),
                "triage": round(total - sum(waited.values()), 3),
                "publish": round(waited["publish"], 3),
                # CPU of the fan-out's own thread outside the Scan and the LIST pages: decoding what it
                # holds, rendering, triage, publishing (wall time above also counts waiting for a core)
                "own_cpu": round(total_cpu - sum(waited_cpu.values()), 3),
            },
        )


def observe_pages(
    cycle: Cycle,
    items: Mapping[str, Mapping[str, Any]],
    pages: Iterable[Sequence[Mapping[str, Any]]],
    ingresses: dict[str, list[Mapping[str, Any]]] | None = None,
) -> dict[str, list[ObservedObject]]:
    """The digests of every live object, by endpoint, one LIST page at a time: a page is digested and
    let go before the next is requested, so the fan-out holds the records and the digests (small, and
    remembered anyway: ``triage_cache``), never every object of the region at once. The Ingresses are
    kept in ``ingresses`` (the path seniority reads them: ``paths.serving_since``)."""
    known = set(items)
    observed: dict[str, list[ObservedObject]] = {}
    for page in pages:
        for name, live in objects_by_endpoint(page, known).items():
            observed.setdefault(name, []).extend(observe(cycle, name, items.get(name), live))
            if ingresses is not None:
                kept = [_ingress_view(obj) for obj in live if obj.get("kind") == "Ingress"]
                if kept:
                    ingresses.setdefault(name, []).extend(kept)
        del page
    return observed


def _ingress_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``paths.serving_since`` reads of a live Ingress (the listed object itself is let go)."""
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    return {"kind": "Ingress", "metadata": {"creationTimestamp": created}, "spec": obj.get("spec") or {}}


def judged(
    cycle: Cycle, items: Mapping[str, Mapping[str, Any]], observed: Mapping[str, Sequence[ObservedObject]]
) -> dict[str, Verdict]:
    """The triage of every endpoint with a record or with objects here, by name (sorted)."""
    return {
        name: judge(cycle, name, items.get(name), observed.get(name, []))
        for name in sorted({*items, *observed})
    }


def timed(
    source: Iterable[T], waited: dict[str, float], what: str, cpu: dict[str, float] | None = None
) -> Iterator[T]:
    """``source`` as it is consumed, the time spent waiting on it added to ``waited[what]`` (and this
    thread's CPU to ``cpu[what]``): the Scan (its requests and decoding) and the LIST pages (requests
    and JSON parsing) apart from the fan-out's own work, which the result reports as ``seconds``."""
    iterator = iter(source)
    while True:
        began, began_cpu = time.perf_counter(), time.thread_time()
        value = next(iterator, _END)
        waited[what] += time.perf_counter() - began
        if cpu is not None:
            cpu[what] = cpu.get(what, 0.0) + time.thread_time() - began_cpu
        if value is _END:
            return
        yield value


_END: Any = object()


def _first_of_interval(ports: FanOutPorts, now: float) -> bool:
    interval = ports.settings.reconcile_interval_seconds
    return ports.state.claim_cycle(int(now // interval), ttl_seconds=max(60, 4 * interval))


def _configuration(ports: FanOutPorts) -> tuple[str, str]:
    return (ports.settings.region, repr(ports.render_options))


def _cycle(ports: FanOutPorts, now: float, shadowed: Mapping[str, str]) -> Cycle:
    settings = ports.settings
    return Cycle(
        region=settings.region,
        options=ports.render_options,
        now=now,
        interval_seconds=settings.reconcile_interval_seconds,
        heartbeat_seconds=settings.status_heartbeat_seconds,
        unhealthy_threshold_seconds=settings.inference_unhealthy_threshold_seconds,
        withheld=frozenset(ports.state.withheld()),
        resyncs=False,
        shadowed=dict(shadowed),
        retry_errors=_configuration(ports) not in ports.configurations_run,
    )
