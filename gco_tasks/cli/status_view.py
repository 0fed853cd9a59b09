"""What ``gco-tasks endpoints status NAME`` shows, as data: per region, state, message, last report and its
age, rollout progress and the last few Kubernetes Events of the endpoint's Deployment.

Where it stands in the flow: at the very end, reading what the fleet reported. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from gco_tasks.core.fields import parse_timestamp
from gco_tasks.core.records import Endpoint, InvalidEndpointError, RecordHeader
from gco_tasks.core.redaction import redact_item

PENDING: Final = "pending"
EVENTS_SHOWN: Final = 5


@dataclass(frozen=True)
class EventLine:
    """One Kubernetes Event, as shown: when, type, reason, note, and how often it happened."""

    at: str | None
    type: str
    reason: str
    note: str
    count: int = 1


@dataclass(frozen=True)
class RegionEvents:
    """The last Events of a region's Deployment, or why there are none to show."""

    events: tuple[EventLine, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class RegionView:
    region: str
    targeted: bool
    state: str
    message: str
    last_sync: str | None
    age_seconds: float | None
    stale: bool
    ready: int
    updated: int | None
    desired: int
    events: tuple[EventLine, ...] = ()
    events_note: str = ""

    def report(self) -> tuple[object, ...]:
        """What a change is about (everything but ages), for ``--watch``."""
        return (self.region, self.state, self.message, self.ready, self.updated, self.desired, self.events)


@dataclass(frozen=True)
class StatusView:
    name: str
    desired_state: str
    item: dict[str, Any]  # the record, env values redacted
    regions: tuple[RegionView, ...]
    problems: tuple[str, ...] = ()
    summary: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as stored (env redacted), plus ``regions`` (the per-region view) and ``problems``."""
        out = dict(self.item)
        out["regions"] = [_region_json(region) for region in self.regions]
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    def report(self) -> tuple[object, ...]:
        return (self.desired_state, self.problems, tuple(region.report() for region in self.regions))

    def settled_in(self, state: str) -> bool:
        """Whether every targeted region reports ``state`` (and at least one is targeted)."""
        targeted = [region for region in self.regions if region.targeted]
        return bool(targeted) and all(region.state == state for region in targeted)


def build_view(
    item: Mapping[str, Any],
    now: datetime,
    heartbeat_seconds: int,
    events: Mapping[str, RegionEvents] | None = None,
) -> StatusView:
    """The status of one record (raw item) at ``now``; ``events`` per region when they could be read."""
    header = RecordHeader.from_item(item)
    problems: tuple[str, ...] = ()
    summary: dict[str, str] = {}
    try:
        summary = _summary(Endpoint.from_item(item))
    except InvalidEndpointError as exc:
        problems = tuple(f"{path}: {message}" for path, message in exc.problems)
    regions = list(dict.fromkeys([*header.target_regions, *sorted(header.region_status)]))
    views = tuple(
        _region(header, region, now, heartbeat_seconds, (events or {}).get(region, RegionEvents()))
        for region in regions
    )
    return StatusView(
        name=header.endpoint_name,
        desired_state=header.desired_state or "?",
        item=redact_item(item),
        regions=views,
        problems=problems,
        summary=summary,
    )


def _summary(endpoint: Endpoint) -> dict[str, str]:
    spec = endpoint.spec
    summary = {
        "Image": spec.image,
        "Replicas": f"{spec.replicas} (GPUs {spec.gpu_count} {spec.accelerator})",
        "Regions": ", ".join(endpoint.target_regions),
        "Ingress path": endpoint.ingress_path,
    }
    if spec.env:
        summary["Env"] = ", ".join(f"{key}=***" for key in sorted(spec.env))
    if spec.canary is not None:
        canary = spec.canary
        summary["Canary"] = f"{canary.image} ({canary.weight}%, {canary.replicas} replicas)"
    return summary


def _region(
    header: RecordHeader, region: str, now: datetime, heartbeat_seconds: int, events: RegionEvents
) -> RegionView:
    raw = header.region_status.get(region)
    status: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    last_sync = status.get("last_sync") if isinstance(status.get("last_sync"), str) else None
    synced = parse_timestamp(last_sync)
    age = max(0.0, (now - synced).total_seconds()) if synced else None
    return RegionView(
        region=region,
        targeted=header.targets(region),
        state=str(status.get("state", PENDING)) if status else PENDING,
        message=str(status.get("error") or ""),
        last_sync=last_sync,
        age_seconds=age,
        stale=age is not None and age > 2 * heartbeat_seconds,
        ready=_count(status.get("replicas_ready")) or 0,
        updated=_count(status.get("replicas_updated")),
        desired=_count(status.get("replicas_desired")) or 0,
        events=events.events,
        events_note=events.note,
    )


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _region_json(region: RegionView) -> dict[str, Any]:
    data = asdict(region)
    data["events"] = [asdict(event) for event in region.events]
    return data


def age_text(seconds: float | None) -> str:
    """``12s ago``, ``3m ago``, ``2h ago``, ``4d ago``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= 2 * size:
            return f"{whole // size}{unit} ago"
    return f"{whole}s ago"


# --------------------------------------------------------------------------------------------------
# Events: from the API's JSON to lines
# --------------------------------------------------------------------------------------------------


def event_lines(items: Sequence[Mapping[str, Any]], limit: int = EVENTS_SHOWN) -> tuple[EventLine, ...]:
    """The last ``limit`` Events (``events.k8s.io/v1`` or core ``v1`` JSON), oldest first."""
    lines = sorted((_event_line(item) for item in items), key=lambda line: line.at or "")
    return tuple(lines[-limit:])


def _event_line(item: Mapping[str, Any]) -> EventLine:
    series = item.get("series") if isinstance(item.get("series"), Mapping) else {}
    metadata = item.get("metadata") if isinstance(item.get("metadata"), Mapping) else {}
    at = (
        (series or {}).get("lastObservedTime")
        or item.get("eventTime")
        or item.get("deprecatedLastTimestamp")
        or item.get("lastTimestamp")
        or (metadata or {}).get("creationTimestamp")
    )
    count = (series or {}).get("count") or item.get("deprecatedCount") or item.get("count") or 1
    return EventLine(
        at=str(at) if at else None,
        type=str(item.get("type") or ""),
        reason=str(item.get("reason") or ""),
        note=str(item.get("note") or item.get("message") or ""),
        count=_count(count) or 1,
    )
