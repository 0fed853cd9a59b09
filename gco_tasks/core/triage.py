"""Which endpoints need a reconcile this cycle: the fan-out's decision, made with the reconciler's own pure
rules, so that a steady cycle sends nothing.

Where it stands in the flow: inside ``fan_out``, between its reads (one Scan, one LIST per kind) and its
messages. More in docs/architecture.md (periodic messages capped per cycle: ``due``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gco_tasks.core.diagnosis import judge_rollouts
from gco_tasks.core.drift import digests
from gco_tasks.core.intake import name_problem
from gco_tasks.core.paths import shadowing_message
from gco_tasks.core.plan import ObservedObject, Plan, apply_withholding, desired_hash
from gco_tasks.core.records import DELETED, STOPPED, Endpoint, RecordHeader
from gco_tasks.core.rendering import RenderOptions, object_key
from gco_tasks.core.results import TriageReason
from gco_tasks.core.status import (
    ROLLING,
    StatusAction,
    StatusReport,
    as_status,
    outcome_of,
    region_status_of,
    status_action,
    status_needs_write,
    status_report,
)
from gco_tasks.core.teardown import plan_around_terminating, waiting_note
from gco_tasks.core.triage_cache import Rendering, digest, full_objects, rendering

#: States a stuck or refused endpoint is predicted in (its error says more than the fan-out can see).
UNSETTLED: frozenset[str] = ROLLING | {"error"}
#: "Never" for ``status_needs_write``'s heartbeat: asks whether the report itself changed.
_NO_HEARTBEAT = 10**9


@dataclass(frozen=True)
class Cycle:
    """What every endpoint's triage in one fan-out shares."""

    region: str
    options: RenderOptions
    now: float
    interval_seconds: int
    heartbeat_seconds: int
    unhealthy_threshold_seconds: int
    withheld: frozenset[str] = frozenset()
    resyncs: bool = True  # False: this interval's resync slots were sent already (by an earlier run)
    shadowed: Mapping[str, str] = field(default_factory=dict)  # name -> the older endpoint it shadows
    retry_errors: bool = False  # a configuration not run under before: reported errors are sent again
    #: Scratch of one fan-out: objects rendered in full, by endpoint, until their digests took them.
    rendered: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: Scratch of one fan-out: each endpoint's record and its rendering, looked up once (``_rendering``).
    renderings: dict[str, tuple[Mapping[str, Any], Rendering]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def resync_slot(self, name: str) -> bool:
        """Whether this cycle sends ``name``'s periodic resync."""
        return self.resyncs and resync_due(name, self.now, self.interval_seconds, self.resync_cycles)

    @property
    def resync_cycles(self) -> int:
        return resync_cycles(self.heartbeat_seconds, self.interval_seconds)

    @property
    def resync_period_seconds(self) -> int:
        return self.resync_cycles * self.interval_seconds


@dataclass(frozen=True)
class Verdict:
    """One endpoint's triage: why it needs a reconcile (None: it does not), and the digests of its live
    objects that the message carries as its hint."""

    reason: TriageReason | None
    observed: tuple[ObservedObject, ...] = ()


def resync_cycles(heartbeat_seconds: int, interval_seconds: int) -> int:
    """Every endpoint is resynced once every this many cycles: just over a heartbeat period, so the
    resync finds its heartbeat due and writes it."""
    return math.ceil(heartbeat_seconds / interval_seconds) + 1


def resync_due(name: str, now: float, interval_seconds: int, cycles: int) -> bool:
    """Whether this cycle is ``name``'s resync slot: cycle number (``now`` in intervals) modulo
    ``cycles`` equals a stable hash of the name modulo ``cycles`` (crc32: the same in every process)."""
    if cycles <= 1:
        return True
    return int(now // interval_seconds) % cycles == zlib.crc32(name.encode()) % cycles


#: The periodic reasons: a resync slot, and a status heartbeat overdue (its slot was missed). Only the
#: first fan-out of an interval sends them, at most ``periodic_budget`` (``due``).
PERIODIC: frozenset[str] = frozenset({TriageReason.RESYNC, TriageReason.HEARTBEAT})


def periodic_budget(records: int, interval_seconds: int, heartbeat_seconds: int) -> int:
    """The most periodic messages one cycle sends: N x interval / heartbeat period (rounded up), the
    rate at which N heartbeats spread evenly over the period come due."""
    return math.ceil(records * interval_seconds / max(1, heartbeat_seconds))


def due(verdicts: Mapping[str, Verdict], budget: int) -> list[str]:
    """The endpoints a cycle sends (sorted): every one with work, and of the periodic ones (``PERIODIC``)
    at most ``budget``: resync slots first, then overdue heartbeats, each in the order of a stable hash of
    the name. Those left over are sent by a later cycle (a slot missed becomes an overdue heartbeat), so
    periodic writes never pile up, however many cycles were missed or how long a cold start compressed
    the heartbeats."""
    periodic = sorted(
        (name for name, verdict in verdicts.items() if verdict.reason in PERIODIC),
        key=lambda name: (verdicts[name].reason != TriageReason.RESYNC, zlib.crc32(name.encode()), name),
    )
    chosen = set(periodic[: max(0, budget)])
    return sorted(
        name
        for name, verdict in verdicts.items()
        if verdict.reason is not None and (verdict.reason not in PERIODIC or name in chosen)
    )


def triage(
    cycle: Cycle, name: str, item: Mapping[str, Any] | None, live: Sequence[Mapping[str, Any]]
) -> Verdict:
    """Whether endpoint ``name`` (its scanned record, or None, and its live objects) needs a reconcile."""
    return judge(cycle, name, item, observe(cycle, name, item, live))


def observe(
    cycle: Cycle, name: str, item: Mapping[str, Any] | None, live: Sequence[Mapping[str, Any]]
) -> tuple[ObservedObject, ...]:
    """The digests of some of ``name``'s live objects (any subset: the fan-out digests each LIST page as
    it arrives and keeps only the digests), against the record's rendering when it is valid."""
    if item is None:
        return tuple(digests(live, []))
    if name_problem(name) is not None:
        return ()
    found = _rendering(cycle, name, item)
    if found.endpoint is None:
        return tuple(digests(live, []))
    return tuple(_digests(cycle, item, found.hashes, live))


def judge(
    cycle: Cycle, name: str, item: Mapping[str, Any] | None, observed: Sequence[ObservedObject]
) -> Verdict:
    """``triage`` from the digests of every live object of ``name`` (``observe``)."""
    if item is None:
        return Verdict(TriageReason.ORPHAN if observed else None, tuple(observed))
    header = RecordHeader.from_item(item)
    problem = name_problem(name)
    if problem is not None:  # the reconcile reports it and touches nothing
        return Verdict(_status_reason(cycle, header, StatusReport("error", error=problem)))
    found = _rendering(cycle, name, item)
    if found.endpoint is None:
        return Verdict(_invalid_reason(cycle, header, found.error, observed), tuple(observed))
    refusal = _shadowing(cycle, found.endpoint, found.stubs)
    if refusal is not None:
        reason = _status_reason(cycle, header, StatusReport("error", error=refusal))
    else:
        reason = _work_reason(cycle, found.endpoint, header, list(found.stubs), list(observed))
    if reason is None and cycle.resync_slot(name):
        reason = TriageReason.RESYNC
    return Verdict(reason, tuple(observed))


def _rendering(cycle: Cycle, name: str, item: Mapping[str, Any]) -> Rendering:
    """``triage_cache.rendering``, looked up once per endpoint and fan-out (its LIST pages come kind by
    kind: the memo's fingerprint of the record is not computed again for each)."""
    seen = cycle.renderings.get(name)
    if seen is not None and seen[0] is item:
        return seen[1]
    found = rendering(item, cycle.region, cycle.options, cycle.rendered)
    cycle.renderings[name] = (item, found)
    return found


def _invalid_reason(
    cycle: Cycle, header: RecordHeader, error: str | None, live: Sequence[ObservedObject]
) -> TriageReason | None:
    """An invalid record gets its error written; one marked deleted has its objects torn down."""
    if header.desired_state == DELETED:
        return TriageReason.DELETE if live else _status_reason(cycle, header, StatusReport("deleted"))
    return _status_reason(cycle, header, StatusReport("error", error=error))


def _shadowing(cycle: Cycle, endpoint: Endpoint, stubs: Sequence[Mapping[str, Any]]) -> str | None:
    """The refusal a record gets whose path shadows an older one's (``paths``), as the reconciler words
    it: only for a record serving here with an Ingress."""
    other = cycle.shadowed.get(endpoint.endpoint_name)
    serving = endpoint.targets(cycle.region) and endpoint.desired_state not in (STOPPED, DELETED)
    if other is None or not serving or not any(stub["kind"] == "Ingress" for stub in stubs):
        return None
    return shadowing_message(endpoint.ingress_path, other)


def _digests(
    cycle: Cycle,
    item: Mapping[str, Any],
    hashes: Mapping[tuple[str, str], str | None],
    live: Sequence[Mapping[str, Any]],
) -> list[ObservedObject]:
    """The live objects' digests against the rendering (remembered; the objects are rendered in full
    only when a live object's version has not been compared with its desired hash before, once per
    endpoint and cycle: ``Cycle.rendered``)."""
    name = str(item.get("endpoint_name"))

    def wanted(key: tuple[str, str]) -> Mapping[str, Any] | None:
        objects = cycle.rendered.get(name)
        if objects is None:
            rendered = full_objects(item, cycle.region, cycle.options)
            objects = cycle.rendered[name] = {object_key(obj): obj for obj in rendered}
        return objects.pop(key, None)  # each live object's key once: let it go

    return [digest(obj, hashes.get(object_key(obj)), partial(wanted, object_key(obj))) for obj in live]


def _work_reason(
    cycle: Cycle,
    endpoint: Endpoint,
    header: RecordHeader,
    desired: list[dict[str, Any]],
    observed: list[ObservedObject],
) -> TriageReason | None:
    """``desired`` may be stubs (kind, name, hash): enough for the plan and the watchdog's rule."""
    name = endpoint.endpoint_name
    withheld = name in cycle.withheld and any(obj["kind"] == "Ingress" for obj in desired)
    withholding = apply_withholding(name, desired, observed, withheld, cycle.unhealthy_threshold_seconds)
    if withholding.release:
        return TriageReason.WATCHDOG_RELEASE
    plan, waiting = plan_around_terminating(withholding.desired, observed)
    if not plan.is_empty:
        return None if _failed_this_version(cycle, header) else plan_reason(plan, observed)
    notes = withholding.notes + waiting_note(waiting)
    outcome = outcome_of(endpoint, cycle.region, observed, plan, None, notes, judge_rollouts(observed))
    return _status_reason(cycle, header, status_report(outcome))


def _failed_this_version(cycle: Cycle, header: RecordHeader) -> bool:
    """The region's last report is an error about the record as it is now: the reconcile that wrote it
    is not repeated every cycle, but at the endpoint's resync slot (or at once when the record changes,
    the rollout completes, or the fleet runs under a new configuration: ``Cycle.retry_errors``)."""
    entry = header.region_status.get(cycle.region)
    if cycle.retry_errors:
        return False
    if not isinstance(entry, Mapping) or entry.get("state") != "error" or header.updated_at is None:
        return False
    return entry.get("observed_updated_at") == header.updated_at


def plan_reason(plan: Plan, observed: Sequence[ObservedObject]) -> TriageReason:
    """A word for why a plan is not empty: ``change`` (the record changed, or an object is missing),
    ``adopt`` (GCO's monitor co-owns an object), ``drift`` (a hand edit), or ``delete``."""
    live = {o.key: o for o in observed}
    pairs = [(live.get(object_key(obj)), obj) for obj in plan.apply]
    if any(seen is None or seen.desired_hash != desired_hash(obj) for seen, obj in pairs):
        return TriageReason.CHANGE
    if any(seen is not None and seen.legacy for seen, _ in pairs):
        return TriageReason.ADOPT
    return TriageReason.DRIFT if pairs else TriageReason.DELETE


def _status_reason(cycle: Cycle, header: RecordHeader, report: StatusReport | None) -> TriageReason | None:
    """Why the status needs a reconcile: its entry must go, the report changed, a rollout is in
    progress, or the last write is overdue (its resync slot was missed). An error already reported
    about this record version waits for the resync slot (``_failed_this_version``)."""
    region = cycle.region
    action = status_action(header, region, report)
    if action is StatusAction.REMOVE:
        return TriageReason.STATUS_ENTRY
    if action is StatusAction.KEEP or report is None:
        return None
    if report.state in UNSETTLED and _failed_this_version(cycle, header):
        return None
    status = region_status_of(report, header.updated_at)
    previous = as_status(header.region_status.get(region))  # read once for both questions
    moment = datetime.fromtimestamp(cycle.now, UTC)
    if status_needs_write(status, previous, moment, _NO_HEARTBEAT):
        return TriageReason.STATUS
    if report.state in ROLLING:
        return TriageReason.ROLLOUT
    if status_needs_write(status, previous, moment, 2 * cycle.resync_period_seconds):
        return TriageReason.HEARTBEAT
    return None
