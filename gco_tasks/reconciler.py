"""Reconcile one endpoint in this region: lock -> observe -> plan (pure) -> apply -> report.

Where it stands in the flow: the heart of it. The ``reconcile_endpoint`` task calls ``reconcile`` for a
name (with the fan-out's snapshot, or without one when called ad hoc); it returns a ``ReconcileResult``,
the one account of what happened that the task, logs and metrics read. The steps:

1. lock ``gco:<region>:endpoint:<name>`` (skip if another worker holds it);
2. desired = ``manifests.render_endpoint`` (pure), after the namespace check;
3. the record, always by one consistent read (a message only hints: ``observe.Hint``), and the live
   objects: the fan-out's digests where they can be trusted, else read by name (``observe``);
4. plan = ``plan.plan_changes`` (pure: missing, changed or drifted objects), less the Ingress while the
   watchdog withholds it;
5. apply, then delete, object by object (an object GCO's monitor made is handed over first:
   ``adoption``): a permanent refusal of one object is collected and the others still go ahead; a
   transient failure propagates (the task retries the whole, idempotent, reconcile);
6. report ``region_status`` through ``status`` (pure rules), and promote ``deploying`` -> ``running``.

Idempotent: safe to run any number of times, concurrently, late or after a crash. I/O goes through the
narrow ports of ``ReconcilePorts`` only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from gco_tasks.adoption import hand_over
from gco_tasks.config import Settings
from gco_tasks.endpoints import Endpoint, InvalidEndpointError, RecordHeader, RegionStatus
from gco_tasks.errors import PermanentError
from gco_tasks.manifests import RenderOptions, object_key, render_endpoint
from gco_tasks.observe import Hint, candidate_keys, observe, parse_hint, read_digests
from gco_tasks.plan import ObservedObject, Plan, Withholding, apply_withholding, plan_changes
from gco_tasks.ports import Cluster, EndpointLocks, RecordRead, StatusReports, Withheld
from gco_tasks.status import (
    StatusAction,
    StatusReport,
    outcome_of,
    promotion_due,
    status_action,
    status_report,
)

log = logging.getLogger(__name__)


class ReconcileStore(RecordRead, StatusReports, Protocol): ...


class ReconcileState(EndpointLocks, Withheld, Protocol): ...


class ReconcilePorts(Protocol):
    """What reconciling one endpoint reads and writes (``fleet.Fleet`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> ReconcileStore: ...
    @property
    def cluster(self) -> Cluster: ...
    @property
    def state(self) -> ReconcileState: ...
    @property
    def render_options(self) -> RenderOptions: ...


# --------------------------------------------------------------------------- the result


class ResultKind(StrEnum):
    """How a reconcile ended."""

    APPLIED = "applied"  # something was applied (and maybe deleted)
    DELETED = "deleted"  # objects were deleted, nothing applied
    NOOP = "noop"  # already in sync
    SKIPPED_LOCKED = "skipped_locked"  # another worker holds the endpoint
    ERROR = "error"  # the API server refused an object (permanent); status says why
    INVALID = "invalid"  # the record is not valid for this fleet; status says why, nothing touched
    ORPHAN_REMOVED = "orphan_removed"  # objects of an endpoint with no record were removed


#: Kinds that end the Celery task as FAILED (after the error status has been written).
FAILED_KINDS = frozenset({ResultKind.ERROR, ResultKind.INVALID})


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile did: the one object the task, logs, metrics and Events read."""

    endpoint: str
    kind: ResultKind
    applied: tuple[str, ...] = ()  # "Kind/name", in apply order
    deleted: tuple[str, ...] = ()  # "Kind/name", in delete order
    state: str | None = None  # the region state reported ("orphan-removed" for an orphan cleanup)
    error: str | None = None
    skipped: str | None = None  # why nothing was attempted

    @property
    def actions(self) -> list[str]:
        return [f"apply {key}" for key in self.applied] + [f"delete {key}" for key in self.deleted]

    @property
    def failed(self) -> bool:
        """A permanent failure: the task ends FAILED, without retry. (A transient failure is never a
        result: it is raised as a ``TransientError`` and the task retries the whole reconcile.)"""
        return self.kind in FAILED_KINDS

    def as_dict(self) -> dict[str, Any]:
        """The task's JSON result: ``endpoint``, ``actions``, ``state``, ``result`` (the kind), and
        ``error`` / ``skipped`` when set."""
        result: dict[str, Any] = {
            "endpoint": self.endpoint,
            "actions": self.actions,
            "state": self.state,
            "result": self.kind.value,
        }
        if self.error:
            result["error"] = self.error
        if self.skipped:
            result["skipped"] = self.skipped
        return result


def result_kind(applied: Sequence[str], deleted: Sequence[str], error: str | None) -> ResultKind:
    if error:
        return ResultKind.ERROR
    if applied:
        return ResultKind.APPLIED
    return ResultKind.DELETED if deleted else ResultKind.NOOP


# --------------------------------------------------------------------------- pure decisions


def desired_objects(endpoint: Endpoint, region: str, options: RenderOptions) -> list[dict[str, Any]]:
    """What should exist in ``region`` for ``endpoint``. Raises ``InvalidEndpointError`` for a record this
    fleet cannot serve: one in a namespace other than the one it manages (``options.namespace``)."""
    namespace = endpoint.namespace or options.namespace
    if namespace != options.namespace and endpoint.targets(region):
        message = (
            f"'{namespace}' is not the namespace this fleet manages "
            f"('{options.namespace}', INFERENCE_NAMESPACE)"
        )
        raise InvalidEndpointError([("namespace", message)], endpoint.endpoint_name)
    return render_endpoint(endpoint, region, options)


# --------------------------------------------------------------------------- the reconcile


def reconcile(
    ports: ReconcilePorts, name: str, snapshot: Mapping[str, Any] | None = None, now: float | None = None
) -> ReconcileResult:
    """Make the region's objects for ``name`` match its record and report status. ``snapshot`` is the
    fan-out's hint (``observe.Hint``); the record is read from the table whatever it says."""
    now = time.time() if now is None else now
    ports.state.clear_pending(name)
    ttl = ports.settings.task_time_limit_seconds + 30
    with ports.state.endpoint_lock(name, ttl_seconds=ttl) as acquired:
        if not acquired:
            return ReconcileResult(name, ResultKind.SKIPPED_LOCKED, skipped="locked by another worker")
        hint = parse_hint(snapshot)
        item = ports.store.get_item(name)  # consistent: the table decides, never the message
        if item is None:
            return _remove_orphan(ports, name, read_digests(ports.cluster, candidate_keys(name), name, []))
        return _reconcile_record(ports, name, item, hint, now)


def _remove_orphan(ports: ReconcilePorts, name: str, observed: list[ObservedObject]) -> ReconcileResult:
    """Objects labelled as ours whose endpoint has no record at all (checked with a consistent read)."""
    applied, deleted, errors = _carry_out(ports.cluster, plan_changes([], observed))
    if deleted:
        log.info("removed orphaned objects of %s: %s", name, ", ".join(deleted))
    error = "; ".join(errors) or None
    kind = ResultKind.ERROR if error else ResultKind.ORPHAN_REMOVED if deleted else ResultKind.NOOP
    state = "orphan-removed" if applied or deleted else None
    return ReconcileResult(name, kind, applied, deleted, state, error)


def _reconcile_record(
    ports: ReconcilePorts, name: str, item: dict[str, Any], hint: Hint | None, now: float
) -> ReconcileResult:
    header = RecordHeader.from_item(item)
    region = ports.settings.region
    try:
        endpoint = Endpoint.from_item(item)
        desired = desired_objects(endpoint, region, ports.render_options)
    except InvalidEndpointError as exc:
        if header.desired_state == "deleted":
            observed = read_digests(ports.cluster, candidate_keys(name), name, [])
            return _tear_down_invalid(ports, header, observed, now)
        # Bad input is data: report it, change nothing in the cluster, delete nothing.
        _report_status(ports, header, StatusReport("error", error=str(exc)), now)
        return ReconcileResult(name, ResultKind.INVALID, state="error", error=str(exc))
    withheld = any(obj["kind"] == "Ingress" for obj in desired) and ports.state.is_withheld(name)
    threshold = ports.settings.inference_unhealthy_threshold_seconds

    def planned(observed: list[ObservedObject]) -> tuple[Withholding, Plan]:
        withholding = apply_withholding(name, desired, observed, withheld, threshold)
        return withholding, plan_changes(withholding.desired, observed)

    fresh = hint is not None and hint.is_fresh(now, ports.settings.reconcile_interval_seconds)
    observed = observe(ports.cluster, name, desired, hint, fresh, lambda seen: planned(seen)[1])
    withholding, plan = planned(observed)
    if withholding.release:
        ports.state.release([name])
    legacy = {o.key for o in observed if o.legacy}
    applied, deleted, errors = _carry_out(ports.cluster, plan, legacy)
    error = "; ".join(errors) or None
    report = status_report(outcome_of(endpoint, region, observed, plan, error, withholding.notes))
    _report_status(ports, header, report, now, cleaned=not error)
    if promotion_due(header, region, report) and ports.store.promote_if_deploying(name):
        log.info("%s: every target region is running; desired state deploying -> running", name)
    state = report.state if report else None
    return ReconcileResult(name, result_kind(applied, deleted, error), applied, deleted, state, error)


def _tear_down_invalid(
    ports: ReconcilePorts, header: RecordHeader, observed: list[ObservedObject], now: float
) -> ReconcileResult:
    """A record marked deleted (``endpoints delete --force``) that does not validate: its intent is
    unambiguous, so its objects go and the region reports ``deleted`` (then the record can be purged)."""
    applied, deleted, errors = _carry_out(ports.cluster, plan_changes([], observed))
    error = "; ".join(errors) or None
    report = StatusReport("error", error=error) if error else StatusReport("deleted")
    _report_status(ports, header, report, now)
    kind = result_kind(applied, deleted, error)
    return ReconcileResult(header.endpoint_name, kind, applied, deleted, report.state, error)


def _carry_out(
    cluster: Cluster, plan: Plan, legacy: Collection[tuple[str, str]] = ()
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Apply (after the hand-over of what GCO's monitor owns, for the ``legacy`` keys), then delete,
    object by object. A permanent failure (e.g. 422) of one object is collected and the others still go
    ahead; a transient one propagates. Returns (applied, deleted, errors)."""
    steps: list[tuple[str, str, Callable[[], object]]] = [
        ("apply", f"{kind}/{name}", partial(_apply, cluster, obj, (kind, name) in legacy))
        for (kind, name), obj in zip(map(object_key, plan.apply), plan.apply, strict=True)
    ]
    steps += [("delete", f"{kind}/{name}", partial(cluster.delete, kind, name)) for kind, name in plan.delete]
    done: dict[str, list[str]] = {"apply": [], "delete": []}
    errors: list[str] = []
    for verb, key, step in steps:
        try:
            step()
        except PermanentError as exc:
            errors.append(str(exc))
        else:
            done[verb].append(key)
    return tuple(done["apply"]), tuple(done["delete"]), errors


def _apply(cluster: Cluster, obj: dict[str, Any], legacy: bool) -> object:
    if legacy:
        hand_over(cluster, obj)
    return cluster.apply(obj)


def _report_status(
    ports: ReconcilePorts, header: RecordHeader, report: StatusReport | None, now: float, cleaned: bool = True
) -> None:
    """Carry out ``status_action``: write (the store skips an unchanged report until its heartbeat is
    due), remove the region's entry, or leave it."""
    region = ports.settings.region
    action = status_action(header, region, report, cleaned)
    if action is StatusAction.REMOVE:
        ports.store.remove_region_status(header.endpoint_name, region)
    if action is not StatusAction.WRITE or report is None:
        return
    status = RegionStatus(
        state=report.state,
        replicas_ready=report.replicas_ready,
        replicas_desired=report.replicas_desired,
        replicas_updated=report.replicas_updated,
        error=report.error,
    )
    previous = header.region_status.get(region)
    moment = datetime.fromtimestamp(now, UTC)
    ports.store.update_region_status(header.endpoint_name, region, status, previous=previous, now=moment)
