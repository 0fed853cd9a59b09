"""Reconcile one endpoint in this region: lock -> observe -> plan (pure) -> apply -> report.

Where it stands in the flow: the heart of it. The ``reconcile_endpoint`` task calls ``reconcile`` for a
name (and the fan-out's hint); it returns the ``ReconcileResult`` the task, logs and metrics read. The six
steps and why each is as it is: docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, cast

from gco_tasks.core.config import Settings
from gco_tasks.core.conventions import ingress_name
from gco_tasks.core.drift import digest
from gco_tasks.core.errors import GcoError, PermanentError, TransientError
from gco_tasks.core.hint import Hint
from gco_tasks.core.hpa_handover import handover_candidates, hpa_deletions_first
from gco_tasks.core.intake import name_problem
from gco_tasks.core.ownership import claim_problem, creations, is_ours
from gco_tasks.core.paths import already_serves_its_path, shadowed_paths, shadowing_message
from gco_tasks.core.plan import ObservedObject, Plan, Withholding, apply_withholding
from gco_tasks.core.ports import (
    Cluster,
    ClusterGets,
    EndpointLocks,
    PathFirstSeen,
    RecordBatchRead,
    RecordRead,
    RecordScan,
    RolloutRequeues,
    StatusReports,
    Withheld,
)
from gco_tasks.core.records import DELETED, STOPPED, Endpoint, InvalidEndpointError, RecordHeader
from gco_tasks.core.rendering import RenderOptions, desired_objects, object_key
from gco_tasks.core.results import ReconcileResult, Requeue, ResultKind, result_kind
from gco_tasks.core.rollout import Assessment
from gco_tasks.core.status import (
    ROLLING,
    StatusAction,
    StatusReport,
    outcome_of,
    promotion_due,
    region_state,
    region_status_of,
    status_action,
    status_report,
    waits_for_first_look,
)
from gco_tasks.core.teardown import plan_around_terminating, waiting_note
from gco_tasks.flows.adoption import adopt
from gco_tasks.flows.concurrently import RECONCILES, run_all
from gco_tasks.flows.observe import Key, ReadsOnce, candidate_keys, observe, read_digests
from gco_tasks.flows.reconcile_io import assess_rollouts, hand_over

log = logging.getLogger(__name__)


#: A hint is fresh for one interval, and for at least this long: its in-sync verdict spares the GETs of
#: the objects it names (never a Deployment's, never one to be written), and a drift it missed is the
#: next fan-out's LIST to find. At a short interval a rollout's requeue (2 s, then 4) would else read
#: every object again.
HINT_TRUST_FLOOR_SECONDS = 15.0
#: A rollout's look sooner than this (or one interval, when longer) is requeued by its reconcile.
REQUEUE_HORIZON_SECONDS = 15.0


class ObjectChanged(TransientError):
    """An object changed between two requests of one reconcile: the task retries the reconcile."""


class ReconcileStore(RecordRead, RecordScan, StatusReports, Protocol): ...


class BatchStore(ReconcileStore, RecordBatchRead, Protocol): ...


class ReconcileState(EndpointLocks, RolloutRequeues, Withheld, PathFirstSeen, Protocol): ...


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


# --------------------------------------------------------------------------- the reconcile


def reconcile(
    ports: ReconcilePorts, name: str, hint: Hint | None = None, now: float | None = None
) -> ReconcileResult:
    """Make the region's objects for ``name`` match its record and report status. ``hint`` is the
    fan-out's (``core.hint.Hint``, parsed by the task); the record is read from the table whatever it
    says."""
    now = time.time() if now is None else now
    ports.state.clear_pending(name)
    with ports.state.endpoint_lock(name, ttl_seconds=_lock_ttl(ports)) as acquired:
        if not acquired:
            return _skipped_locked(name)
        return reconcile_locked(ports, name, hint, now, ports.store.get_item)


def reconcile_locked(
    ports: ReconcilePorts,
    name: str,
    hint: Hint | None,
    now: float,
    read: Callable[[str], Mapping[str, Any] | None],
) -> ReconcileResult:
    """``reconcile`` once the endpoint's lock is held: ``read`` gives its record, read consistently
    after the lock was taken (``get_item``, or a batch's read: ``reconcile_batch``)."""
    problem = name_problem(name)
    if problem is not None:  # never in a label selector: the API server would refuse it (400)
        return _refuse_name(ports, name, problem, now)
    item = read(name)  # consistent: the table decides, never the message
    if item is None:
        return _remove_orphan(ports, name, read_digests(ports.cluster, candidate_keys(name), name, []))
    reads = ReadsOnce(ports.cluster)  # every read by name before the first write, once
    shadowed_by = _shadowed_by(ports, reads, name, item, hint)
    return _reconcile_record(ports, reads, name, dict(item), hint, now, shadowed_by)


#: One endpoint's reconcile, handed the ports to use.
ReconcileFlow = Callable[["ReconcilePorts", str, Hint | None], ReconcileResult]
#: Runs one endpoint's reconcile flow (the task's telemetry: metrics, Events, a log line).
RunOne = Callable[[ReconcileFlow, str, Hint | None], ReconcileResult]


class BatchPorts(ReconcilePorts, Protocol):
    @property
    def store(self) -> BatchStore: ...


def reconcile_batch(
    ports: BatchPorts,
    requests: Sequence[tuple[str, Hint | None]],
    run: RunOne,
    now: float | None = None,
) -> list[tuple[str, ReconcileResult | Exception]]:
    """``reconcile`` for several endpoints (answers in the order given): their locks first, then their
    records in one consistent read (``get_items``: one call where each would make its own), then each
    endpoint's reconcile under its lock, released as soon as it is done, a few at a time
    (``concurrently.RECONCILES_IN_FLIGHT``: each waits on round trips more than on the CPU). One
    endpoint's failure is its own: the exception is its answer, and the others go on."""
    now = time.time() if now is None else now
    names = list(dict.fromkeys(name for name, _ in requests))
    for name in names:
        ports.state.clear_pending(name)
    held: dict[str, ExitStack] = {}
    answers: dict[str, ReconcileResult | Exception] = {}
    try:
        for name in names:
            stack = ExitStack()
            if stack.enter_context(ports.state.endpoint_lock(name, ttl_seconds=_lock_ttl(ports))):
                held[name] = stack
            else:
                stack.close()
                answers[name] = _skipped_locked(name)
        records = _read_batch(ports.store, [name for name in held if name_problem(name) is None])
        hints = dict(requests)
        flow = partial(reconcile_locked, now=now, read=partial(_read_ahead, records, ports.store))
        mine = [name for name in names if name in held]
        calls = [partial(_run_and_release, run, flow, name, hints.get(name), held[name]) for name in mine]
        for name, outcome in zip(mine, run_all(calls, RECONCILES), strict=True):
            error, value = outcome.error, outcome.value
            answers[name] = error if isinstance(error, Exception) else cast(ReconcileResult, value)
    finally:
        for stack in held.values():
            stack.close()  # each was closed by its own reconcile; a second close does nothing
    return [(name, answers[name]) for name in names]


def _run_and_release(
    run: RunOne, flow: ReconcileFlow, name: str, hint: Hint | None, lock: ExitStack
) -> ReconcileResult:
    """One endpoint's reconcile of a batch, its lock released as soon as it is done."""
    with lock:
        return run(flow, name, hint)


def _read_batch(store: BatchStore, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The batch's records, read at once; none when that read failed (each is then read alone, and
    fails or not on its own): throttled, or refused by a policy written before batches (one without
    ``dynamodb:BatchGetItem``), a batch still works, a call per endpoint dearer."""
    if not names:
        return {}
    try:
        return store.get_items(names)
    except GcoError as exc:
        log.warning(
            "reading %d records at once failed, reading each alone (if the worker's IAM policy lacks "
            "dynamodb:BatchGetItem, grant it: docs/production.md): %s",
            len(names),
            exc,
        )
        return {}


def _read_ahead(
    records: Mapping[str, dict[str, Any] | None], store: RecordRead, name: str
) -> Mapping[str, Any] | None:
    """The record the batch read, or (left unprocessed, or the batch read failed) read now."""
    return records[name] if name in records else store.get_item(name)


def _lock_ttl(ports: ReconcilePorts) -> float:
    return ports.settings.task_time_limit_seconds + 30


def _skipped_locked(name: str) -> ReconcileResult:
    return ReconcileResult(name, ResultKind.SKIPPED_LOCKED, skipped="locked by another worker")


def _refuse_name(ports: ReconcilePorts, name: str, problem: str, now: float) -> ReconcileResult:
    """A record whose name cannot be looked for in the cluster: report it on the record (read
    consistently), touch nothing."""
    item = ports.store.get_item(name)
    if item is not None:
        _report_status(ports, RecordHeader.from_item(item), StatusReport("error", error=problem), now)
    return ReconcileResult(name, ResultKind.INVALID, state="error" if item else None, error=problem)


def _shadowed_by(
    ports: ReconcilePorts, reads: ClusterGets, name: str, item: Mapping[str, Any], hint: Hint | None
) -> str | None:
    """The older endpoint whose path this record's equals or shadows (``paths``), for a record that
    serves here. With a hint, the fan-out's verdict from its Scan: a collision it names is checked on the
    two records read now (a forged name refuses nothing); without one, a Scan of the region, unless the
    endpoint's own Ingress already routes the record's path (``paths.already_serves_its_path``)."""
    header = RecordHeader.from_item(item)
    region = ports.settings.region
    if not header.targets(region) or header.desired_state in (STOPPED, DELETED):
        return None
    if hint is not None:
        other = ports.store.get_item(hint.shadowed_by) if hint.shadowed_by else None
        if other is None:
            return None
        seen = ports.state.paths_first_seen([name, str(other.get("endpoint_name"))])
        return shadowed_paths([dict(item), other], seen).get(name)
    own_ingress = reads.get_object("Ingress", ingress_name(name))
    if already_serves_its_path(
        item, region, own_ingress if own_ingress and is_ours(own_ingress, name) else None
    ):
        return None  # a path already held: no Scan (a mass change through the stream reader costs none)
    records = {str(other["endpoint_name"]): other for other in ports.store.scan_items(region)}
    records[name] = dict(item)
    return shadowed_paths(records.values(), ports.state.paths_first_seen()).get(name)


def _remove_orphan(ports: ReconcilePorts, name: str, observed: list[ObservedObject]) -> ReconcileResult:
    """Objects labelled as ours whose endpoint has no record at all (checked with a consistent read)."""
    plan, _ = plan_around_terminating([], observed)
    carried = _carry_out(ports.cluster, plan)
    applied, deleted, errors = carried.applied, carried.deleted, carried.errors
    if deleted:
        log.info("removed orphaned objects of %s: %s", name, ", ".join(deleted))
    error = "; ".join(errors) or None
    kind = ResultKind.ERROR if error else ResultKind.ORPHAN_REMOVED if deleted else ResultKind.NOOP
    state = "orphan-removed" if applied or deleted else None
    return ReconcileResult(name, kind, applied, deleted, state, error)


def _reconcile_record(
    ports: ReconcilePorts,
    reads: ClusterGets,
    name: str,
    item: dict[str, Any],
    hint: Hint | None,
    now: float,
    shadowed_by: str | None = None,
) -> ReconcileResult:
    header = RecordHeader.from_item(item)
    region = ports.settings.region
    try:
        endpoint = Endpoint.from_item(item)
        desired = desired_objects(endpoint, region, ports.render_options)
    except InvalidEndpointError as exc:
        if header.desired_state == "deleted":
            observed = read_digests(reads, candidate_keys(name), name, [])
            return _tear_down_invalid(ports, header, observed, now)
        # Bad input is data: report it, change nothing in the cluster, delete nothing.
        return _refuse(ports, header, ResultKind.INVALID, str(exc), now)
    if shadowed_by is not None and any(obj["kind"] == "Ingress" for obj in desired):
        return _refuse(
            ports, header, ResultKind.INVALID, shadowing_message(endpoint.ingress_path, shadowed_by), now
        )
    observed, withholding, plan, waiting = _observe_and_plan(ports, reads, name, desired, hint, now)
    if withholding.release:
        ports.state.release([name])
    carried = _carry_out(ports.cluster, plan, observed, name)
    applied, deleted, errors = carried.applied, carried.deleted, carried.errors
    if carried.refusal is not None:  # never take over an object that is not this endpoint's
        return _refuse(ports, header, ResultKind.ERROR, carried.refusal, now, applied)
    wanted = {object_key(obj): obj for obj in plan.apply}
    observed = observed + [digest(live, wanted.get(object_key(live))) for live in carried.found]
    error = "; ".join(errors) or None
    rollouts = _rollouts(ports, endpoint, observed, plan, error, now)
    notes = withholding.notes + waiting_note(waiting)
    outcome = outcome_of(endpoint, region, observed, plan, error, notes, rollouts)
    report = status_report(outcome)
    state = report.state if report else None
    # A new endpoint's first ``creating`` is left to the look this reconcile requeues (were that look
    # lost, the fan-out finds the entry missing); reported now when no look was scheduled after all.
    first_look = report is not None and waits_for_first_look(header, region, outcome, report)
    if not first_look:
        _report_and_promote(ports, header, report, now, cleaned=not error and not observed)
    requeue = _requeue(ports, header, withholding.desired, state, now)
    if first_look and requeue is None:
        _report_and_promote(ports, header, report, now, cleaned=not error and not observed)
    kind = result_kind(applied, deleted, error)
    return ReconcileResult(name, kind, applied, deleted, state, error, requeue=requeue)


def _requeue(
    ports: ReconcilePorts,
    header: RecordHeader,
    desired: Sequence[dict[str, Any]],
    state: str | None,
    now: float,
) -> Requeue | None:
    """A rollout left in progress asks to be looked at again soon, as controller-runtime's
    ``RequeueAfter``: ``ROLLOUT_REQUEUE_SECONDS``, doubling while it lasts up to
    ``ROLLOUT_REQUEUE_MAX_SECONDS`` (``RegionState.schedule_requeue``, one outstanding per endpoint
    across every worker) for a look sooner than the interval, or ``REQUEUE_HORIZON_SECONDS`` when the
    interval is shorter (a fan-out defers to a backlog); a later one is the fan-out's to send (a requeued
    message is pending, so a long one would hold back a change to the record). A rollout that ended
    starts the next one's backoff afresh."""
    settings = ports.settings
    name = header.endpoint_name
    if state not in ROLLING:
        if region_state(header, settings.region) in ROLLING:
            ports.state.clear_requeue(name)
        return None
    countdown = ports.state.schedule_requeue(
        name,
        now,
        settings.rollout_requeue_seconds,
        settings.rollout_requeue_max_seconds,
        max(settings.reconcile_interval_seconds, REQUEUE_HORIZON_SECONDS),
    )
    if countdown is None:
        return None
    left = tuple(digest(obj, obj) for obj in desired)  # as applied: in sync
    return Requeue(countdown, Hint(now, left, header.updated_at, "requeue"))


def _observe_and_plan(
    ports: ReconcilePorts,
    reads: ClusterGets,
    name: str,
    desired: list[dict[str, Any]],
    hint: Hint | None,
    now: float,
) -> tuple[list[ObservedObject], Withholding, Plan, tuple[str, ...]]:
    """The live objects this reconcile may rely on (``observe``) and its plan over them: the watchdog's
    withholding, then the plan around objects still terminating."""
    withheld = any(obj["kind"] == "Ingress" for obj in desired) and ports.state.is_withheld(name)
    threshold = ports.settings.inference_unhealthy_threshold_seconds

    def planned(seen: list[ObservedObject]) -> tuple[Withholding, Plan, tuple[str, ...]]:
        withholding = apply_withholding(name, desired, seen, withheld, threshold)
        plan, waiting = plan_around_terminating(withholding.desired, seen)
        return withholding, plan, waiting

    trusted_for = max(ports.settings.reconcile_interval_seconds, HINT_TRUST_FLOOR_SECONDS)
    fresh = hint is not None and hint.is_fresh(now, trusted_for)
    observed = observe(reads, name, desired, hint, fresh, lambda seen: planned(seen)[1])
    return (observed, *planned(observed))


def _tear_down_invalid(
    ports: ReconcilePorts, header: RecordHeader, observed: list[ObservedObject], now: float
) -> ReconcileResult:
    """A record marked deleted (``endpoints delete --force``) that does not validate: its intent is
    unambiguous, so its objects go and the region reports ``deleting``, then ``deleted`` once they are
    gone (then the record can be purged)."""
    plan, _ = plan_around_terminating([], observed)
    carried = _carry_out(ports.cluster, plan)
    applied, deleted, errors = carried.applied, carried.deleted, carried.errors
    error = "; ".join(errors) or None
    gone = StatusReport("deleting" if observed else "deleted")  # "deleted" once a LIST finds nothing
    report = StatusReport("error", error=error) if error else gone
    _report_status(ports, header, report, now)
    kind = result_kind(applied, deleted, error)
    return ReconcileResult(header.endpoint_name, kind, applied, deleted, report.state, error)


def _refuse(
    ports: ReconcilePorts,
    header: RecordHeader,
    kind: ResultKind,
    message: str,
    now: float,
    applied: tuple[str, ...] = (),
) -> ReconcileResult:
    """Report ``message`` as the region's error; nothing (more) is changed in the cluster. ``applied``:
    what the reconcile had updated before it found the reason to stop."""
    _report_status(ports, header, StatusReport("error", error=message), now)
    return ReconcileResult(header.endpoint_name, kind, applied, state="error", error=message)


def _rollouts(
    ports: ReconcilePorts,
    endpoint: Endpoint,
    observed: list[ObservedObject],
    plan: Plan,
    error: str | None,
    now: float,
) -> dict[str, Assessment]:
    """The rollouts the status is to be judged by: the endpoint's Deployments this reconcile did not
    just apply (``diagnosis`` reads the new pods of those not complete); none when no rollout counts."""
    serving = endpoint.targets(ports.settings.region) and endpoint.desired_state not in (STOPPED, DELETED)
    if error or not serving:
        return {}
    applied = set(map(object_key, plan.apply))
    judged = [item for item in observed if item.key not in applied]
    return assess_rollouts(ports.cluster, judged, now, ports.settings.unschedulable_grace_seconds)


@dataclass(frozen=True)
class Carried:
    """What ``_carry_out`` did: ``applied`` and ``deleted`` ("Kind/name", in order), the permanent
    refusals (``errors``), the ownership refusal that stopped it (``refusal``), and the live objects
    the plan meant to create that existed already and are the endpoint's own (``found``)."""

    applied: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    refusal: str | None = None
    found: tuple[dict[str, Any], ...] = ()


class _NotOurs(Exception):
    """An object the plan would create exists and is not the endpoint's (``ownership.claim_problem``)."""


def _carry_out(
    cluster: Cluster, plan: Plan, observed: Sequence[ObservedObject] = (), endpoint: str = ""
) -> Carried:
    """Apply, then delete, object by object (a new endpoint's creations, all independent, together:
    ``concurrently``). A permanent failure (e.g. 422) of one object is collected
    and the others still go ahead; a transient one propagates. An object the plan creates (absent from
    ``observed``) is created with a create-only request (``ownership``): one that exists is read, and
    if it is not ``endpoint``'s the reconcile stops there, deleting again what it created before.
    ``hpa_handover``'s rules around autoscaling: an HPA no longer wanted is deleted first, and a
    Deployment about to lose ``spec.replicas`` hands it to the HPA's side first; an object GCO's monitor
    still co-owns (its digest says ``legacy``) has that ownership handed to us first (``adoption``)."""
    first, rest = hpa_deletions_first(plan)
    legacy = {item.key for item in observed if item.legacy}
    new = set(creations(plan, observed)) if endpoint else set()
    found: list[dict[str, Any]] = []
    steps = _steps(cluster, first, legacy, new, endpoint, found)
    handed = hand_over(cluster, handover_candidates(rest, observed))
    if handed:
        log.info("spec.replicas handed over to the HPA (value kept): %s", ", ".join(handed))
    steps += _steps(cluster, rest, legacy, new, endpoint, found)
    calls = [step for _, _, step in steps]
    together = first.is_empty and not handed and _all_creations(steps, new)
    ran = run_all(calls) if together else None  # else each runs in turn, up to the first transient error
    done: dict[str, list[str]] = {"apply": [], "delete": []}
    created: list[Key] = []
    errors: list[str] = []
    for index, (verb, key, _) in enumerate(steps):
        outcome = ran[index] if ran is not None else run_all([calls[index]])[0]
        if isinstance(outcome.error, PermanentError):
            errors.append(str(outcome.error))
        elif isinstance(outcome.error, _NotOurs):
            if ran is not None:  # sent together: the later ones ran too
                later = zip(steps[index + 1 :], ran[index + 1 :], strict=True)
                created += [_kind_and_name(k) for (_, k, _), o in later if o.value is _CREATED]
            _undo(cluster, created)
            kept = tuple(k for k in done["apply"] if _kind_and_name(k) not in set(created))
            return Carried(kept, tuple(done["delete"]), errors, str(outcome.error), tuple(found))
        elif outcome.error is not None:
            raise outcome.error
        else:
            done[verb].append(key)
            if outcome.value is _CREATED:
                created.append(_kind_and_name(key))
    return Carried(tuple(done["apply"]), tuple(done["delete"]), errors, None, tuple(found))


def _all_creations(steps: Sequence[tuple[str, str, Callable[[], object]]], new: Collection[Key]) -> bool:
    """Whether every step creates an object (a new endpoint's): independent requests, sent together."""
    return len(steps) > 1 and all(verb == "apply" and _kind_and_name(key) in new for verb, key, _ in steps)


def _kind_and_name(key: str) -> Key:
    kind, _, name = key.partition("/")
    return kind, name


#: What a create step returns when it made the object (``_undo`` deletes those on a refusal).
_CREATED = object()


def _undo(cluster: Cluster, created: Sequence[tuple[str, str]]) -> None:
    """Delete, newest first, the objects this reconcile created before a refusal stopped it."""
    for kind, name in reversed(created):
        try:
            cluster.delete(kind, name)
        except PermanentError as exc:
            log.warning("could not delete %s/%s, created before the refusal: %s", kind, name, exc)
    if created:
        log.info("deleted again what this reconcile created: %s", ", ".join(f"{k}/{n}" for k, n in created))


def _steps(
    cluster: Cluster,
    plan: Plan,
    legacy: Collection[tuple[str, str]] = (),
    new: Collection[tuple[str, str]] = (),
    endpoint: str = "",
    found: list[dict[str, Any]] | None = None,
) -> list[tuple[str, str, Callable[[], object]]]:
    steps: list[tuple[str, str, Callable[[], object]]] = []
    for (kind, name), obj in zip(map(object_key, plan.apply), plan.apply, strict=True):
        if (kind, name) in new:
            step = partial(_create, cluster, obj, endpoint, found if found is not None else [])
        else:
            step = partial(_apply, cluster, obj, (kind, name) in legacy)
        steps.append(("apply", f"{kind}/{name}", step))
    steps += [("delete", f"{kind}/{name}", partial(cluster.delete, kind, name)) for kind, name in plan.delete]
    return steps


def _create(cluster: Cluster, obj: dict[str, Any], endpoint: str, found: list[dict[str, Any]]) -> object:
    """Create ``obj`` (create-only); when one of its name exists, read it: the endpoint's own is applied
    over (and kept in ``found`` for the status), anyone else's stops the reconcile (``_NotOurs``)."""
    if cluster.create(obj) is not None:
        return _CREATED
    kind, name = object_key(obj)
    live = cluster.get_object(kind, name)
    if live is None:  # deleted between the two requests: the whole reconcile is retried
        raise ObjectChanged(f"{kind}/{name} existed a moment ago and is gone; reconciling again")
    problem = claim_problem(live, endpoint)
    if problem is not None:
        raise _NotOurs(problem)
    found.append(live)
    return _apply(cluster, obj, digest(live, obj).legacy)


def _apply(cluster: Cluster, obj: dict[str, Any], legacy: bool) -> object:
    if legacy:
        adopt(cluster, obj)
    return cluster.apply(obj)


def _report_and_promote(
    ports: ReconcilePorts, header: RecordHeader, report: StatusReport | None, now: float, cleaned: bool
) -> None:
    """Report the region's status; a ``running`` that completes the record's promotion (``promotion_due``)
    goes with the promotion in one write, or, when that write's conditions do not hold, as two."""
    region, name = ports.settings.region, header.endpoint_name
    if report is None or not promotion_due(header, region, report):
        _report_status(ports, header, report, now, cleaned)
        return
    status = region_status_of(report, header.updated_at)
    moment = datetime.fromtimestamp(now, UTC)
    promoted = ports.store.report_running_and_promote(name, region, status, header.updated_at, now=moment)
    if not promoted:
        _report_status(ports, header, report, now, cleaned)
        promoted = ports.store.promote_if_deploying(name, updated_at=header.updated_at, region=region)
    if promoted:
        log.info("%s: every target region is running; desired state deploying -> running", name)


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
    status = region_status_of(report, header.updated_at)
    previous = header.region_status.get(region)
    moment = datetime.fromtimestamp(now, UTC)
    ports.store.update_region_status(header.endpoint_name, region, status, previous=previous, now=moment)
