"""What the tasks did, made visible: Prometheus metrics, Kubernetes Events and one log line per reconcile.

Where it stands in the flow: between the Celery tasks and the flows. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from gco_tasks.adapters import logging_setup, metric_labels, metrics
from gco_tasks.adapters.events import EventReason, Regarding
from gco_tasks.core import conventions as names
from gco_tasks.core.errors import GcoError, PermanentError
from gco_tasks.core.hint import Hint
from gco_tasks.core.records import RecordHeader
from gco_tasks.core.results import FanOutResult, ReconcileResult, ResultKind, WatchdogResult
from gco_tasks.core.status import region_state
from gco_tasks.flows import reconciler

if TYPE_CHECKING:
    from gco_tasks.core.ports import Sender
    from gco_tasks.flows.fanout import FanOutPorts
    from gco_tasks.flows.reconciler import ReconcileFlow, ReconcilePorts
    from gco_tasks.flows.watchdog import WatchdogPorts
    from gco_tasks.worker.fleet import Fleet

# The logger keeps its name from before the layers move: log queries and the docs filter on it.
log = logging.getLogger("gco_tasks.telemetry")

# --------------------------------------------------------------------------- what the ports showed


@dataclass
class Witness:
    """What a flow's I/O showed beyond its result (plain data, read by the pure functions below)."""

    listed: dict[str, str | None] | None = None  # "Kind/name" -> uid of objects LISTed (None: no LIST)
    answered: dict[str, str | None] = field(default_factory=dict)  # "Kind/name" -> uid of apply answers
    refused: list[tuple[str, int | None]] = field(default_factory=list)  # (verb, HTTP status) per refusal
    status: tuple[str, str | None] | None = None  # (state, message) of the status report
    promoted: bool = False
    released: set[str] = field(default_factory=set)  # endpoints whose Ingress withholding ended
    scanned: list[Mapping[str, Any]] | None = None  # the records a fan-out scanned
    missing: set[str] = field(default_factory=set)  # "Kind/name" read by name and not found
    #: Reads of one reconcile may run in threads (``flows.concurrently``): ``saw`` makes ``listed`` once.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def saw(self, objects: Iterable[Mapping[str, Any]]) -> None:
        keyed = [(_key(obj), _uid(obj)) for obj in objects]
        with self._lock:
            self.listed = self.listed or {}
            self.listed.update(keyed)


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def _uid(obj: Mapping[str, Any] | None) -> str | None:
    uid = ((obj or {}).get("metadata") or {}).get("uid")
    return str(uid) if uid else None


# --------------------------------------------------------------------------- pure decisions


def result_labels(
    result: ReconcileResult, seen: Witness
) -> tuple[ResultKind, metric_labels.ErrorReason | None]:
    """``gco_reconcile_total{result}`` (``ReconcileResult.label``) and, for a failed reconcile, its
    ``reason``."""
    kind = result.label
    if not result.failed:
        return kind, None
    if result.kind is ResultKind.INVALID:
        return kind, metric_labels.ErrorReason.INVALID_SPEC
    status = next((status for _, status in seen.refused), None)
    return kind, metric_labels.reason_for_kube_status(status) if seen.refused else None


def existed_before(seen: Witness, hinted: Mapping[str, str | None] | None) -> dict[str, str | None] | None:
    """The objects that existed before a reconcile: those its hint named and those it read (by name or
    LIST), less those a read by name did not find; None when it knows neither."""
    if seen.listed is None and hinted is None:
        return None
    known = {**(hinted or {}), **(seen.listed or {})}
    return {key: uid for key, uid in known.items() if key not in seen.missing}


def deployment_uid(name: str, seen: Witness, hinted: Mapping[str, str | None] | None) -> str | None:
    """The uid of the endpoint's Deployment: from an apply's answer, a LIST, or the hint's digests."""
    key = f"Deployment/{name}"
    for source in (seen.answered, seen.listed or {}, hinted or {}):
        if source.get(key):
            return source[key]
    return None


def reconcile_events(
    result: ReconcileResult, seen: Witness, before: Mapping[str, Any] | None
) -> list[tuple[EventReason, str]]:
    """The Events one reconcile records on the endpoint's Deployment, in the order things happened.
    ``before``: the objects that existed before it ("Kind/name" keys; None when unknown)."""
    found: list[tuple[EventReason, str]] = []
    if result.applied:
        found.append((EventReason.APPLIED, applied_note(result.applied, before)))
    if result.deleted:
        orphan = result.kind is ResultKind.ORPHAN_REMOVED
        note = f"deleted {', '.join(result.deleted)}" + ("" if orphan else _state_suffix(result.state))
        found.append((EventReason.ORPHAN_REMOVED if orphan else EventReason.DELETED, note))
    if result.kind is ResultKind.INVALID and result.error:
        found.append((EventReason.INVALID_SPEC, f"{result.error}; nothing was changed in the cluster"))
    elif result.failed and result.error:
        verbs = {verb for verb, _ in seen.refused}
        reason = EventReason.DELETE_FAILED if verbs == {"delete"} else EventReason.APPLY_FAILED
        found.append((reason, result.error))
    if (
        result.endpoint in seen.released
        and f"Ingress/{names.ingress_name(result.endpoint)}" in result.applied
    ):
        found.append((EventReason.INGRESS_RESTORED, "a replica is ready again: the Ingress is restored"))
    if seen.promoted:
        found.append(
            (EventReason.PROMOTED, "every target region is running: desired state deploying -> running")
        )
    message = seen.status[1] if seen.status else None
    if result.state == "error" and not result.failed and message:
        found.append((EventReason.ROLLOUT_STUCK, message))
    return found


def applied_note(applied: Sequence[str], before: Mapping[str, Any] | None) -> str:
    """``created A, B; updated C`` (or ``applied ...`` when what existed before is unknown)."""
    if before is None:
        return f"applied {', '.join(applied)}"
    created = [key for key in applied if key not in before]
    updated = [key for key in applied if key in before]
    parts = [
        f"created {', '.join(created)}" if created else "",
        f"updated {', '.join(updated)}" if updated else "",
    ]
    return "; ".join(part for part in parts if part)


def _state_suffix(state: str | None) -> str:
    return f" (state {state})" if state and state != "orphan-removed" else ""


def endpoint_states(items: Iterable[Mapping[str, Any]], region: str) -> dict[str, int]:
    """``gco_endpoints{state}``: the records of the region (targeting it, or still holding its status
    entry) by the state it last reported; ``unknown`` when it has reported none."""
    counts: dict[str, int] = {}
    for item in items:
        if not isinstance(item.get("endpoint_name"), str):
            continue
        header = RecordHeader.from_item(item)
        if header.targets(region) or region in header.region_status:
            state = region_state(header, region) or "unknown"
            counts[state] = counts.get(state, 0) + 1
    return counts


def log_fields(result: ReconcileResult, label: str, reason: str | None, duration_s: float) -> dict[str, Any]:
    """The ``extra`` of a reconcile's log line."""
    fields: dict[str, Any] = {
        "endpoint": result.endpoint,
        "result": label,
        "duration_ms": round(duration_s * 1000, 1),
    }
    if reason:
        fields["reason"] = reason
    if result.state:
        fields["state"] = result.state
    return fields


# --------------------------------------------------------------------------- the watched ports


class _Passthrough:
    """Everything not overridden goes to the adapter itself."""

    def __init__(self, inner: Any, seen: Witness) -> None:
        self._inner = inner
        self._seen = seen

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


class _WatchedCluster(_Passthrough):
    def list_objects(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = self._inner.list_objects(*args, **kwargs)
        self._seen.saw(objects)
        return objects

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._inner.get_object(kind, name)
        self._seen.saw([found] if found is not None else [])
        if found is None:
            self._seen.missing.add(f"{kind}/{name}")
        return found

    def apply(self, obj: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self._inner.apply(obj, *args, **kwargs)
        except PermanentError as exc:
            self._seen.refused.append(("apply", getattr(exc, "status", None)))
            raise
        self._seen.answered[_key(obj)] = _uid(answer)
        return answer

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] | None = self._inner.create(obj)
        except PermanentError as exc:
            self._seen.refused.append(("apply", getattr(exc, "status", None)))
            raise
        if answer is not None:
            self._seen.answered[_key(obj)] = _uid(answer)
        return answer

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(self._inner.delete(*args, **kwargs))
        except PermanentError as exc:
            self._seen.refused.append(("delete", getattr(exc, "status", None)))
            raise


class _WatchedStore(_Passthrough):
    def update_region_status(self, name: str, region: str, status: Any, *args: Any, **kwargs: Any) -> bool:
        self._seen.status = (str(status.state), status.error)
        return bool(self._inner.update_region_status(name, region, status, *args, **kwargs))

    def promote_if_deploying(self, *args: Any, **kwargs: Any) -> bool:
        promoted = bool(self._inner.promote_if_deploying(*args, **kwargs))
        self._seen.promoted = self._seen.promoted or promoted
        return promoted

    def report_running_and_promote(
        self, name: str, region: str, status: Any, *args: Any, **kwargs: Any
    ) -> bool:
        promoted = bool(self._inner.report_running_and_promote(name, region, status, *args, **kwargs))
        if promoted:
            self._seen.status = (str(status.state), status.error)
            self._seen.promoted = True
        return promoted

    def scan_items(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        scanned = self._seen.scanned = self._seen.scanned if self._seen.scanned is not None else []
        for item in self._inner.scan_items(*args, **kwargs):
            scanned.append(item)
            yield item


class _WatchedState(_Passthrough):
    def release(self, names_: Iterable[str], *args: Any, **kwargs: Any) -> None:
        released = list(names_)
        self._seen.released.update(released)
        self._inner.release(released, *args, **kwargs)


@dataclass
class _WatchedPorts:
    """The fleet's ports, watched: what the flows are handed."""

    fleet: Fleet
    seen: Witness

    @property
    def settings(self) -> Any:
        return self.fleet.settings

    @property
    def render_options(self) -> Any:
        return self.fleet.render_options

    @property
    def configurations_run(self) -> set[tuple[str, str]]:
        return self.fleet.configurations_run

    @property
    def store(self) -> Any:
        return _WatchedStore(self.fleet.store, self.seen)

    @property
    def cluster(self) -> Any:
        return _WatchedCluster(self.fleet.cluster, self.seen)

    @property
    def state(self) -> Any:
        return _WatchedState(self.fleet.state, self.seen)


# --------------------------------------------------------------------------- the tasks' side


def run_reconcile(
    fleet: Fleet,
    flow: Callable[[ReconcilePorts, str, Hint | None], ReconcileResult],
    name: str,
    hint: Hint | None = None,
) -> ReconcileResult:
    """Run one reconcile of ``name`` and record it (metrics, Events, one log line). An exception is
    counted as an ``error`` attempt with its reason, logged, and raised again (the task retries or
    fails)."""
    region = fleet.settings.region
    seen = Witness()
    with logging_setup.log_context(endpoint=name):
        started = time.monotonic()
        try:
            result = flow(cast("ReconcilePorts", _WatchedPorts(fleet, seen)), name, hint)
        except Exception as exc:
            _record_failed_attempt(region, name, exc, time.monotonic() - started)
            raise
        duration = time.monotonic() - started
        label, reason = result_labels(result, seen)
        metrics.record_reconcile(region, label, duration, error_reason=reason)
        digests = hint.object_uids() if hint is not None else None
        before = existed_before(seen, digests)
        events = reconcile_events(result, seen, before)
        uid = deployment_uid(name, seen, digests)
        if events and uid is None:
            uid = _read_uid(fleet, name)  # nothing this reconcile read showed it (an invalid record, say)
        regarding = Regarding(name, fleet.settings.inference_namespace, uid)
        for event_reason, note in events:
            fleet.events.record(regarding, event_reason, note)
        _log_result(result, label, reason, duration)
    return result


def run_reconcile_batch(
    fleet: Fleet, requests: Sequence[tuple[str, Hint | None]]
) -> list[tuple[str, ReconcileResult | Exception]]:
    """``reconciler.reconcile_batch`` over this process's adapters, each endpoint's reconcile recorded
    as ``run_reconcile`` records a lone one (its failure counted, logged, and returned as its answer)."""

    def run_one(flow: ReconcileFlow, name: str, hint: Hint | None) -> ReconcileResult:
        return run_reconcile(fleet, flow, name, hint)

    return reconciler.reconcile_batch(fleet, requests, run_one)


def _read_uid(fleet: Fleet, name: str) -> str | None:
    """The uid of the endpoint's Deployment, read by name (None when it does not exist or cannot be
    read: the Event is then recorded without it)."""
    try:
        return _uid(fleet.cluster.get_object("Deployment", name))
    except GcoError:
        return None


def _record_failed_attempt(region: str, name: str, exc: Exception, duration: float) -> None:
    reason = metric_labels.reason_for_exception(exc)
    metrics.record_reconcile(region, ResultKind.ERROR, duration, error_reason=reason)
    extra = {
        "endpoint": name,
        "result": "error",
        "duration_ms": round(duration * 1000, 1),
        "reason": reason.value,
    }
    log.warning(
        "reconcile of %s failed (%s): %s: %s", name, reason.value, type(exc).__name__, exc, extra=extra
    )


def _log_result(result: ReconcileResult, label: str, reason: str | None, duration: float) -> None:
    extra = log_fields(result, label, reason, duration)
    actions = ", ".join(result.actions) or "no change"
    if result.failed:
        log.warning("reconciled %s: %s: %s (%s)", result.endpoint, label, result.error, actions, extra=extra)
    elif result.kind is ResultKind.SKIPPED_LOCKED:
        log.info("reconciled %s: skipped, %s", result.endpoint, result.skipped, extra=extra)
    else:
        log.info("reconciled %s: %s (%s)", result.endpoint, label, actions, extra=extra)


def run_fan_out(
    fleet: Fleet, flow: Callable[[FanOutPorts, Sender], FanOutResult], send: Sender
) -> FanOutResult:
    """Run one fan-out and record it (duration, messages, endpoints by state, when it finished); a
    fan-out skipped because another holds the region's lock records nothing (the lock counted it)."""
    seen = Witness()
    started = time.monotonic()
    summary = flow(cast("FanOutPorts", _WatchedPorts(fleet, seen)), send)
    if summary.skipped is not None:
        return summary
    region = fleet.settings.region
    states = endpoint_states(seen.scanned, region) if seen.scanned is not None else None
    metrics.record_fanout(
        region,
        time.monotonic() - started,
        sent=summary.sent,
        already_pending=summary.already_pending,
        states=states,
        finished_at=time.time(),
    )
    return summary


def record_deferred_fan_out(fleet: Fleet, now: float) -> None:
    """A fan-out that deferred to the messages still outstanding: the region is being reconciled (the
    fan-out's age, which ``GcoFanOutStalled`` watches, is reset), nothing was sent."""
    metrics.record_fanout(fleet.settings.region, 0.0, sent=0, finished_at=now)


def run_watchdog(
    fleet: Fleet, flow: Callable[[WatchdogPorts, Sender], WatchdogResult], send: Sender
) -> WatchdogResult:
    """Run the watchdog and record an Event on each Deployment whose Ingress it removed or whose
    withholding it ended (the uid from the watchdog's own LIST)."""
    seen = Witness()
    summary = flow(cast("WatchdogPorts", _WatchedPorts(fleet, seen)), send)
    threshold = fleet.settings.inference_unhealthy_threshold_seconds
    for name, reason, note in watchdog_events(summary, threshold):
        regarding = Regarding(name, fleet.settings.inference_namespace, deployment_uid(name, seen, None))
        fleet.events.record(regarding, reason, note)
    return summary


def watchdog_events(summary: WatchdogResult, threshold: int) -> list[tuple[str, EventReason, str]]:
    """(endpoint, reason, note) of each Event a watchdog pass records: Ingress withheld, or restored
    (the recovered endpoint's reconcile, sent at once, applies it again)."""
    found = []
    for name in summary.withheld:
        note = (
            f"0 ready replicas for over {threshold}s: Ingress/{names.ingress_name(name)} removed so the "
            "shared load balancer stops sending it traffic; it is restored once a replica is ready"
        )
        found.append((name, EventReason.INGRESS_WITHHELD, note))
    for name in summary.recovered:
        note = f"a replica is ready again: Ingress/{names.ingress_name(name)} is being restored"
        found.append((name, EventReason.INGRESS_RESTORED, note))
    return found
