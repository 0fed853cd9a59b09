"""One reconcile cycle of a region: read the table and the cluster once, send a reconcile message only
for the endpoints that need work (``triage``), each with a hint, never the record.

Where it stands in the flow: beat sends ``fan_out`` every ``RECONCILE_INTERVAL_SECONDS``; the messages
go to the region's queue. The cost model: docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from gco_tasks.core import conventions as names
from gco_tasks.core.config import Settings
from gco_tasks.core.hint import Hint
from gco_tasks.core.paths import record_paths, serving_since, shadowed_paths
from gco_tasks.core.plan import objects_by_endpoint
from gco_tasks.core.ports import ClusterReads, FanOutMarks, RecordScan, Sender
from gco_tasks.core.records import RecordHeader
from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.results import FanOutResult
from gco_tasks.core.triage import Cycle, Verdict, triage

log = logging.getLogger(__name__)


class FanOutPorts(Protocol):
    """What a fan-out reads and marks (``fleet.Fleet`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> RecordScan: ...
    @property
    def cluster(self) -> ClusterReads: ...
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
        items, skipped = items_by_name(ports.store.scan_items())
        for keys in skipped:
            log.warning("skipping a table item without a string endpoint_name: keys %s", keys)
        grouped = objects_by_endpoint(ports.cluster.list_objects(names.MANAGED_SELECTOR), set(items))
        region_items = [
            item for item in items.values() if RecordHeader.from_item(item).targets(settings.region)
        ]
        paths = record_paths(region_items)  # seniority: the fleet's first sighting, never created_at
        first_seen = ports.state.note_paths(paths, now, serving_since(paths, grouped))
        shadowed = shadowed_paths(region_items, first_seen)
        cycle = _cycle(ports, now, shadowed)
        found = verdicts(cycle, items, grouped)
        wanted = [name for name, verdict in found.items() if verdict.reason is not None]
        marks = ports.state.mark_pending_many(wanted, settings.message_ttl_seconds)
        sent = [name for name in wanted if marks[name]]
        for name in sent:
            send(name, make_hint(items.get(name), found[name], now, shadowed.get(name)))
        ports.configurations_run.add(_configuration(ports))
        pending = len(wanted) - len(sent)
        reasons = Counter(str(found[name].reason) for name in sent)
        log.info(
            "fan-out %s: %d sent %s, %d already pending", settings.region, len(sent), dict(reasons), pending
        )
        orphans = sorted(set(grouped) - set(items))
        return FanOutResult(
            records=len(items),
            sent=len(sent),
            already_pending=pending,
            in_sync=len(found) - len(wanted),
            reasons=dict(reasons),
            orphans=orphans,
        )


def _configuration(ports: FanOutPorts) -> tuple[str, str]:
    return (ports.settings.region, repr(ports.render_options))


def _cycle(ports: FanOutPorts, now: float, shadowed: Mapping[str, str]) -> Cycle:
    settings = ports.settings
    interval = settings.reconcile_interval_seconds
    first = ports.state.claim_cycle(int(now // interval), ttl_seconds=max(60, 4 * interval))
    return Cycle(
        region=settings.region,
        options=ports.render_options,
        now=now,
        interval_seconds=settings.reconcile_interval_seconds,
        heartbeat_seconds=settings.status_heartbeat_seconds,
        unhealthy_threshold_seconds=settings.inference_unhealthy_threshold_seconds,
        withheld=frozenset(ports.state.withheld()),
        resyncs=first,
        shadowed=dict(shadowed),
        retry_errors=_configuration(ports) not in ports.configurations_run,
    )
