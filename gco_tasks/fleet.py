"""The fleet's operations: fan-out, reconcile one endpoint, watchdog and purge, over the adapters.

Where it stands in the flow: between the Celery tasks (``gco_tasks.tasks``, which only wrap these in
retries, time limits and queues) and the adapters (``store``, ``cluster``, ``locks``). Every decision is
made by the pure core (``manifests.render_endpoint``, ``reconcile.*``); this module reads, calls the core
and carries out what it decided. Integration tests call these functions directly as well as through a
real worker.

The cost model that matters: a fan-out is one paginated Scan plus one label-selected LIST per kind;
each message carries the endpoint's record and the digest of its live objects, so an endpoint already in
sync costs no further Kubernetes call and no DynamoDB write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
from kubernetes.client import ApiClient

from gco_tasks.cluster import ClusterGateway, PermanentClusterError, load_api_client
from gco_tasks.config import Settings
from gco_tasks.endpoints import Endpoint, InvalidEndpointError, RecordHeader, RegionStatus
from gco_tasks.locks import RegionState
from gco_tasks.manifests import RenderOptions, object_key, render_endpoint, selector_for_managed
from gco_tasks.reconcile import (
    CANARY_SUFFIX,
    ObservedObject,
    Outcome,
    Plan,
    StatusReport,
    group_by_endpoint,
    is_purgeable,
    judge_health,
    plan_changes,
    primary_deployment,
    should_promote,
    status_report,
    without_ingress,
)
from gco_tasks.store import EndpointStore

log = logging.getLogger(__name__)

#: Every inference object, ours or made by GCO's own monitor (which we adopt).
MANAGED_SELECTOR = selector_for_managed()

#: Sends one reconcile message: (endpoint name, snapshot) -> None.
Sender = Callable[[str, dict[str, Any]], None]


@dataclass
class Fleet:
    """The adapters one worker process uses (built lazily in each process, after the fork)."""

    settings: Settings
    store: EndpointStore
    cluster: ClusterGateway
    state: RegionState
    render_options: RenderOptions

    @classmethod
    def from_settings(cls, settings: Settings, api_client: ApiClient | None = None) -> Fleet:
        """Adapters for ``settings``; the Kubernetes client from in-cluster config or ``KUBECONFIG`` unless
        one is given (tests and benchmarks pass one pointed at the sandbox API server)."""
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        api_client = api_client or load_api_client()
        return cls(
            settings=settings,
            store=EndpointStore.from_settings(settings),
            cluster=ClusterGateway(api_client, settings.inference_namespace, settings.k8s_api_timeout),
            state=RegionState(client, settings.region),
            render_options=RenderOptions.from_settings(settings),
        )

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def message_ttl_seconds(self) -> int:
        """How long a reconcile message may wait in the queue before it is dropped (and sent again by a
        later fan-out): a few cycles."""
        return max(60, self.settings.reconcile_interval_seconds * 4)


def endpoint_selector(name: str) -> str:
    """The LIST selector for one endpoint's objects (ours carry ``app`` too, as GCO's do)."""
    return f"{MANAGED_SELECTOR},app in ({name},{name}{CANARY_SUFFIX})"


def ingress_name(name: str) -> str:
    return f"inference-{name}"


# --------------------------------------------------------------------------- fan_out


def fan_out(fleet: Fleet, send: Sender, now: float | None = None) -> dict[str, Any]:
    """One cycle for the region: read the table and the cluster once, send one message per endpoint that
    targets this region or still has objects here (unless one is already waiting)."""
    now = time.time() if now is None else now
    with fleet.state.fan_out_lock(ttl_seconds=fleet.settings.task_time_limit_seconds) as acquired:
        if not acquired:
            return {"skipped": "another fan-out of this region is running"}
        items = _items_by_name(fleet.store.scan_items())
        grouped = group_by_endpoint(fleet.cluster.list_objects(MANAGED_SELECTOR), set(items))
        sent: list[str] = []
        pending: list[str] = []
        names = sorted(_names_to_reconcile(items, grouped, fleet.region))
        for name, newly_marked in fleet.state.mark_pending_many(names, fleet.message_ttl_seconds).items():
            if not newly_marked:
                pending.append(name)
                continue
            send(name, make_snapshot(items.get(name), grouped.get(name, []), now))
            sent.append(name)
        orphans = sorted(set(grouped) - set(items))
        log.info("fan-out %s: %d sent, %d already pending", fleet.region, len(sent), len(pending))
        return {"records": len(items), "sent": len(sent), "already_pending": len(pending), "orphans": orphans}


def _items_by_name(items: Any) -> dict[str, dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for item in items:
        name = item.get("endpoint_name")
        if isinstance(name, str) and name:
            by_name[name] = item
        else:
            log.warning("skipping a table item without a string endpoint_name: keys %s", sorted(item))
    return by_name


def _names_to_reconcile(
    items: Mapping[str, Mapping[str, Any]], grouped: Mapping[str, list[ObservedObject]], region: str
) -> set[str]:
    names = set(grouped)
    for name, item in items.items():
        header = RecordHeader.from_item(item)
        if region not in header.target_regions:
            if region in header.region_status:  # a stale entry of a region no longer targeted
                names.add(name)
            continue
        settled = header.desired_state == "deleted" and _region_state(header, region) == "deleted"
        if not settled or name in grouped:
            names.add(name)
    return names


def make_snapshot(
    item: Mapping[str, Any] | None, observed: Sequence[ObservedObject], now: float
) -> dict[str, Any]:
    """What a reconcile message carries: the record as scanned and the digest of its live objects."""
    return {
        "taken_at": now,
        "item": dict(item) if item is not None else None,
        "observed": [o.model_dump(exclude_defaults=True) for o in observed],
    }


# --------------------------------------------------------------------------- reconcile_endpoint


def reconcile_endpoint(
    fleet: Fleet, name: str, snapshot: Mapping[str, Any] | None = None, now: float | None = None
) -> dict[str, Any]:
    """Make the region's objects for ``name`` match its record and report status. Idempotent: safe to run
    any number of times, concurrently, late or after a crash."""
    now = time.time() if now is None else now
    fleet.state.clear_pending(name)
    ttl = fleet.settings.task_time_limit_seconds + 30
    with fleet.state.endpoint_lock(name, ttl_seconds=ttl) as acquired:
        if not acquired:
            return {"endpoint": name, "actions": [], "state": None, "skipped": "locked by another worker"}
        item, observed = _inputs(fleet, name, snapshot, now)
        if item is None:
            return _remove_orphan(fleet, name, observed)
        return _reconcile_record(fleet, name, item, observed, now)


def _inputs(
    fleet: Fleet, name: str, snapshot: Mapping[str, Any] | None, now: float
) -> tuple[dict[str, Any] | None, list[ObservedObject]]:
    """The fan-out's snapshot when it is fresh (one interval old at most) and names a record; otherwise
    read the record (consistent read) and the endpoint's objects now."""
    fresh = snapshot is not None and now - float(snapshot.get("taken_at", 0)) <= (
        fleet.settings.reconcile_interval_seconds
    )
    if snapshot is not None and fresh and snapshot.get("item") is not None:
        observed = [ObservedObject.model_validate(o) for o in snapshot.get("observed", [])]
        return dict(snapshot["item"]), observed
    return observe_endpoint(fleet, name)


def observe_endpoint(fleet: Fleet, name: str) -> tuple[dict[str, Any] | None, list[ObservedObject]]:
    """Read one endpoint's record (consistent read) and its live objects (one LIST per kind) now."""
    item = fleet.store.get_item(name)
    objects = fleet.cluster.list_objects(endpoint_selector(name))
    return item, group_by_endpoint(objects, {name}).get(name, [])


def _remove_orphan(fleet: Fleet, name: str, observed: list[ObservedObject]) -> dict[str, Any]:
    """Objects labelled as ours whose endpoint has no record at all (checked with a consistent read)."""
    done, errors = _carry_out(fleet, plan_changes([], observed))
    if done:
        log.info("removed orphaned objects of %s: %s", name, done)
    result: dict[str, Any] = {"endpoint": name, "actions": done, "state": "orphan-removed" if done else None}
    if errors:
        result["error"] = "; ".join(errors)
    return result


def _reconcile_record(
    fleet: Fleet, name: str, item: dict[str, Any], observed: list[ObservedObject], now: float
) -> dict[str, Any]:
    header = RecordHeader.from_item(item)
    try:
        endpoint = Endpoint.from_item(item)
        desired = desired_objects(fleet, endpoint)
    except InvalidEndpointError as exc:
        if header.desired_state == "deleted":
            return _tear_down_invalid(fleet, header, observed, now)
        # Bad input is data: report it, change nothing in the cluster, delete nothing.
        invalid = StatusReport("error", error=str(exc))
        _report_status(fleet, header, invalid, now)
        return {"endpoint": name, "actions": [], "state": "error", "error": invalid.error}
    desired, notes = _apply_watchdog(fleet, name, desired, observed)
    plan = plan_changes(desired, observed)
    done, errors = _carry_out(fleet, plan)
    error = "; ".join(errors) or None
    outcome = _outcome(fleet, endpoint, observed, plan, error, notes)
    report = status_report(outcome)
    _report_status(fleet, header, report, now, cleaned=not error)
    if report is not None and report.state == "running":
        _maybe_promote(fleet, header, report)
    result: dict[str, Any] = {"endpoint": name, "actions": done, "state": report.state if report else None}
    if error:
        result["error"] = error
    return result


def _tear_down_invalid(
    fleet: Fleet, header: RecordHeader, observed: list[ObservedObject], now: float
) -> dict[str, Any]:
    """A record marked deleted (``delete --force``) that does not validate: its intent is unambiguous,
    so its objects go and the region reports ``deleted`` (then the record can be purged)."""
    done, errors = _carry_out(fleet, plan_changes([], observed))
    error = "; ".join(errors) or None
    report = StatusReport("error", error=error) if error else StatusReport("deleted")
    _report_status(fleet, header, report, now)
    result: dict[str, Any] = {"endpoint": header.endpoint_name, "actions": done, "state": report.state}
    if error:
        result["error"] = error
    return result


def desired_objects(fleet: Fleet, endpoint: Endpoint) -> list[dict[str, Any]]:
    """What should exist in this region for ``endpoint`` (raises ``InvalidEndpointError`` for a record
    this fleet cannot serve, e.g. another namespace)."""
    namespace = endpoint.namespace or fleet.settings.inference_namespace
    if namespace != fleet.settings.inference_namespace and fleet.region in endpoint.target_regions:
        managed = fleet.settings.inference_namespace
        message = f"'{namespace}' is not the namespace this fleet manages ('{managed}', INFERENCE_NAMESPACE)"
        raise InvalidEndpointError([("namespace", message)], endpoint.endpoint_name)
    return render_endpoint(endpoint, fleet.region, fleet.render_options)


def _apply_watchdog(
    fleet: Fleet, name: str, desired: list[dict[str, Any]], observed: list[ObservedObject]
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """A withheld endpoint gets no Ingress until its primary has a ready replica again; then the
    withholding ends here, within the cycle that sees the recovery."""
    if not any(obj["kind"] == "Ingress" for obj in desired) or not fleet.state.is_withheld(name):
        return desired, ()
    primary = primary_deployment(name, observed)
    if primary is not None and primary.ready_replicas > 0:
        fleet.state.release([name])
        return desired, ()
    threshold = fleet.settings.inference_unhealthy_threshold_seconds
    return without_ingress(desired), (
        f"Ingress withheld by the watchdog: 0 ready replicas for over {threshold}s",
    )


def _carry_out(fleet: Fleet, plan: Plan) -> tuple[list[str], list[str]]:
    """Apply, then delete, object by object. A permanent failure (e.g. 422) of one object is collected
    and the others still go ahead; a transient one propagates (the task retries the whole, idempotent,
    reconcile). Returns (actions done, errors)."""
    done: list[str] = []
    errors: list[str] = []
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"apply {kind}/{name}", partial(fleet.cluster.apply, obj))
        for (kind, name), obj in zip(map(object_key, plan.apply), plan.apply, strict=True)
    ]
    steps += [
        (f"delete {kind}/{name}", partial(fleet.cluster.delete, kind, name)) for kind, name in plan.delete
    ]
    for action, step in steps:
        try:
            step()
        except PermanentClusterError as exc:
            errors.append(str(exc))
        else:
            done.append(action)
    return done, errors


def _outcome(
    fleet: Fleet,
    endpoint: Endpoint,
    observed: list[ObservedObject],
    plan: Plan,
    error: str | None,
    notes: tuple[str, ...],
) -> Outcome:
    name = endpoint.endpoint_name
    autoscaling = endpoint.spec.autoscaling
    return Outcome(
        desired_state=endpoint.desired_state,
        targeted=fleet.region in endpoint.target_regions,
        spec_replicas=endpoint.spec.replicas,
        autoscaling_min=autoscaling.min_replicas if autoscaling and autoscaling.enabled else None,
        primary_before=primary_deployment(name, observed),
        primary_applied=any(
            obj["kind"] == "Deployment" and obj["metadata"]["name"] == name for obj in plan.apply
        ),
        error=error,
        notes=notes,
    )


def _report_status(
    fleet: Fleet, header: RecordHeader, report: StatusReport | None, now: float, cleaned: bool = True
) -> None:
    """Write the region's status only when it changed (the store also rewrites a stale one as a
    heartbeat); remove the entry of a region no longer targeted once its objects are gone."""
    region = fleet.region
    previous = header.region_status.get(region)
    if report is None:
        if previous is not None and cleaned:
            fleet.store.remove_region_status(header.endpoint_name, region)
        return
    if region not in header.target_regions and report.state == "error":
        return
    moment = datetime.fromtimestamp(now, UTC)
    status = RegionStatus(
        state=report.state,
        replicas_ready=report.replicas_ready,
        replicas_desired=report.replicas_desired,
        replicas_updated=report.replicas_updated,
        error=report.error,
    )
    fleet.store.update_region_status(header.endpoint_name, region, status, previous=previous, now=moment)


def _region_state(header: RecordHeader, region: str) -> str | None:
    entry = header.region_status.get(region)
    if isinstance(entry, Mapping):
        state = entry.get("state")
        return str(state) if state is not None else None
    return None


def _maybe_promote(fleet: Fleet, header: RecordHeader, report: StatusReport) -> None:
    states = {region: _region_state(header, region) or "" for region in header.target_regions}
    states[fleet.region] = report.state
    promote = should_promote(header.desired_state, header.target_regions, states)
    if promote and fleet.store.promote_if_deploying(header.endpoint_name):
        log.info(
            "%s: every target region is running; desired state deploying -> running", header.endpoint_name
        )


# --------------------------------------------------------------------------- watchdog and purge


def watchdog(fleet: Fleet, send: Sender | None = None, now: float | None = None) -> dict[str, Any]:
    """Withhold the Ingress of endpoints at 0 ready replicas for longer than the threshold (protecting the
    shared ALB); end the withholding of those that recovered and reconcile them at once."""
    now = time.time() if now is None else now
    deployments = [
        ObservedObject.from_object(obj)
        for obj in fleet.cluster.list_objects(MANAGED_SELECTOR, ["Deployment"])
    ]
    primaries = [d for d in deployments if not d.canary]
    clocks = fleet.state.unready_clocks()
    withheld = fleet.state.withheld()
    verdict = judge_health(
        primaries, clocks, withheld, now, fleet.settings.inference_unhealthy_threshold_seconds
    )
    fleet.state.start_clocks(verdict.start_clocks, now)
    for name in verdict.withhold:
        fleet.cluster.delete("Ingress", ingress_name(name))
        log.warning("%s: 0 ready replicas for too long; Ingress withheld to protect the shared ALB", name)
    fleet.state.withhold(verdict.withhold)
    gone = (set(clocks) | withheld) - {d.name for d in primaries}
    fleet.state.release([*verdict.clear, *gone])
    recovered = sorted(withheld & set(verdict.clear))
    if send is not None:
        for name in recovered:
            send(name, {})
    return {
        "unready": sorted(set(clocks) | set(verdict.start_clocks)),
        "withheld": list(verdict.withhold),
        "recovered": recovered,
    }


def purge(fleet: Fleet) -> dict[str, Any]:
    """Remove records whose every target region reports ``deleted``, by the store's conditional delete:
    a record re-created or changed since it was read is never purged."""
    purged: list[str] = []
    for item in fleet.store.scan_items():
        if not isinstance(item.get("endpoint_name"), str):
            continue
        header = RecordHeader.from_item(item)
        states = {region: _region_state(header, region) or "" for region in header.target_regions}
        if is_purgeable(
            header.desired_state, header.target_regions, states
        ) and fleet.store.delete_if_unchanged(header.endpoint_name, header.updated_at):
            purged.append(header.endpoint_name)
    if purged:
        log.info("purged %d deleted endpoint(s): %s", len(purged), ", ".join(purged))
    return {"purged": purged}
