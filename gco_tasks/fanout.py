"""One reconcile cycle of a region: read the table and the cluster once, send a reconcile message for
every endpoint that needs looking at.

Where it stands in the flow: beat sends the ``fan_out`` task every ``RECONCILE_INTERVAL_SECONDS``; it
calls ``fan_out`` here, which sends ``reconcile_endpoint`` messages to the region's queue. The cost
model that matters: a fan-out is one paginated Scan plus one label-selected LIST per kind; each message
carries the endpoint's record and the digest of its live objects (``make_snapshot``), so an endpoint
already in sync costs no further Kubernetes call and no DynamoDB write.

Which endpoints to send is decided by ``endpoints_to_send`` (pure); an endpoint whose message is still
waiting in the queue (a pending mark in Redis) is not sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from gco_tasks import conventions as names
from gco_tasks.config import Settings
from gco_tasks.endpoints import RecordHeader
from gco_tasks.intake import travels_as_json
from gco_tasks.paths import shadowed_paths
from gco_tasks.plan import ObservedObject, group_by_endpoint
from gco_tasks.ports import ClusterReads, FanOutMarks, RecordScan, Sender
from gco_tasks.status import region_state

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


def endpoints_to_send(
    items: Mapping[str, Mapping[str, Any]], grouped: Mapping[str, Sequence[ObservedObject]], region: str
) -> list[str]:
    """Every endpoint with objects here, plus every record targeting the region that is not settled
    (deleted and reported deleted), plus records keeping a stale status entry of an untargeted region."""
    chosen = set(grouped)
    for name, item in items.items():
        header = RecordHeader.from_item(item)
        if not header.targets(region):
            if region in header.region_status:
                chosen.add(name)
            continue
        settled = header.desired_state == "deleted" and region_state(header, region) == "deleted"
        if not settled or name in grouped:
            chosen.add(name)
    return sorted(chosen)


def make_snapshot(
    item: Mapping[str, Any] | None,
    observed: Sequence[ObservedObject],
    now: float,
    shadowed_by: str | None = None,
) -> dict[str, Any]:
    """What a reconcile message carries: the record as scanned and the digest of its live objects, and
    the older endpoint whose path it shadows (``paths``), if any. A record that cannot travel as JSON
    (DynamoDB sets, binary) travels without its item: the worker reads it itself."""
    snapshot: dict[str, Any] = {
        "taken_at": now,
        "item": dict(item) if item is not None and travels_as_json(item) else None,
        "observed": [o.model_dump(exclude_defaults=True) for o in observed],
    }
    if shadowed_by is not None:
        snapshot["shadowed_by"] = shadowed_by
    return snapshot


# --------------------------------------------------------------------------- the cycle


def fan_out(ports: FanOutPorts, send: Sender, now: float | None = None) -> dict[str, Any]:
    """One cycle for the region: read the table and the cluster once, send one message per endpoint that
    targets this region or still has objects here (unless one is already waiting)."""
    now = time.time() if now is None else now
    settings = ports.settings
    with ports.state.fan_out_lock(ttl_seconds=settings.task_time_limit_seconds) as acquired:
        if not acquired:
            return {"skipped": "another fan-out of this region is running"}
        items, skipped = items_by_name(ports.store.scan_items())
        for keys in skipped:
            log.warning("skipping a table item without a string endpoint_name: keys %s", keys)
        grouped = group_by_endpoint(ports.cluster.list_objects(names.MANAGED_SELECTOR), set(items))
        wanted = endpoints_to_send(items, grouped, settings.region)
        marks = ports.state.mark_pending_many(wanted, settings.message_ttl_seconds)
        region_items = (
            item for item in items.values() if RecordHeader.from_item(item).targets(settings.region)
        )
        shadowed = shadowed_paths(region_items)
        sent = [name for name in wanted if marks[name]]
        for name in sent:
            send(name, make_snapshot(items.get(name), grouped.get(name, []), now, shadowed.get(name)))
        pending = len(wanted) - len(sent)
        log.info("fan-out %s: %d sent, %d already pending", settings.region, len(sent), pending)
        orphans = sorted(set(grouped) - set(items))
        return {"records": len(items), "sent": len(sent), "already_pending": pending, "orphans": orphans}
