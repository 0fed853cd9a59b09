"""The pure rules of step 6: what status a region reports for an endpoint, whether it is written, and the
promotion and purge rules that read the statuses of every region.

Where it stands in the flow: after apply. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from gco_tasks.core.conventions import canary_name
from gco_tasks.core.fields import from_dynamo
from gco_tasks.core.intake import bounded
from gco_tasks.core.plan import ObservedObject, Plan, primary_deployment
from gco_tasks.core.records import Endpoint, RecordHeader, RegionStatus
from gco_tasks.core.rollout import Assessment, Phase, assess

#: Region states of a rollout that has not finished: a reconcile looks again soon (``reconciler``'s
#: requeue, backing off while it lasts), since only a reconcile can tell a rollout that progresses from
#: one that is stuck (it may read the pods).
ROLLING: frozenset[str] = frozenset({"creating", "updating"})


@dataclass(frozen=True)
class StatusReport:
    """The region's status of one endpoint, before it becomes a DynamoDB ``region_status`` entry."""

    state: str
    replicas_ready: int = 0
    replicas_desired: int = 0
    error: str | None = None
    #: Replicas of the primary at its current template (rollout progress); None when there is no primary.
    replicas_updated: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found and did, as input to ``status_report``."""

    desired_state: str
    targeted: bool
    spec_replicas: int
    autoscaling_min: int | None
    primary_before: ObservedObject | None
    primary_applied: bool
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: The rollout of the primary and of the canary (``rollout.assess``, pods read when it was not complete).
    primary_rollout: Assessment | None = None
    canary_rollout: Assessment | None = None
    #: Objects of the endpoint were still there when the reconcile began (being deleted, or deleted now).
    remaining: bool = False
    canary_applied: bool = False


def outcome_of(
    endpoint: Endpoint,
    region: str,
    observed: Sequence[ObservedObject],
    plan: Plan,
    error: str | None,
    notes: tuple[str, ...],
    rollouts: Mapping[str, Assessment] | None = None,
) -> Outcome:
    """The ``Outcome`` of reconciling ``endpoint`` in ``region``: what was there, what the plan touched.
    ``rollouts``: Deployment name -> its assessed rollout."""
    name = endpoint.endpoint_name
    autoscaling = endpoint.spec.autoscaling
    rollouts = rollouts or {}
    applied = {obj["metadata"]["name"] for obj in plan.apply if obj["kind"] == "Deployment"}
    return Outcome(
        desired_state=endpoint.desired_state,
        targeted=endpoint.targets(region),
        spec_replicas=endpoint.spec.replicas,
        autoscaling_min=autoscaling.min_replicas if autoscaling and autoscaling.enabled else None,
        primary_before=primary_deployment(name, (o for o in observed if not o.deleting)),
        primary_applied=name in applied,
        error=error,
        notes=notes,
        primary_rollout=rollouts.get(name),
        canary_rollout=rollouts.get(canary_name(name)),
        remaining=bool(observed),
        canary_applied=canary_name(name) in applied,
    )


def status_report(outcome: Outcome) -> StatusReport | None:
    """The status to report, or None when the region's entry should be removed (no longer targeted).
    ``running`` only once the rollout is complete (``rollout.assess``); a rollout that cannot progress
    is ``error`` with its reason; ``deleting`` until every object of a deleted endpoint is gone."""
    primary = outcome.primary_before
    ready = primary.ready_replicas if primary else 0
    if outcome.error:
        return StatusReport("error", ready, outcome.spec_replicas, outcome.error)
    if outcome.desired_state == "deleted":
        return StatusReport("deleting" if outcome.remaining else "deleted")
    if not outcome.targeted:
        return None
    if outcome.desired_state == "stopped":
        return StatusReport("stopped")
    desired = _desired_replicas(outcome)
    note = "; ".join(outcome.notes) or None
    if primary is None:
        return StatusReport("creating", 0, desired, note)
    updated = primary.updated_replicas
    if outcome.primary_applied or outcome.canary_applied:  # what was observed predates the change
        return StatusReport("updating", ready, desired, note, updated)
    failure = rollout_failure(outcome)
    if failure is not None:
        return StatusReport("error", ready, desired, _joined(failure, note), updated)
    if rollout_complete(outcome) and ready >= desired:  # and the HPA has reached minReplicas
        return StatusReport("running", ready, desired, note, updated)
    return StatusReport("creating" if ready == 0 else "updating", ready, desired, note, updated)


def rollout_failure(outcome: Outcome) -> str | None:
    """Why the primary's (or the canary's) rollout cannot progress, if it cannot."""
    primary, canary = outcome.primary_rollout, outcome.canary_rollout
    if primary is not None and primary.phase is Phase.FAILED:
        return primary.message or "the rollout cannot progress"
    if canary is not None and canary.phase is Phase.FAILED:
        return f"canary: {canary.message or 'the rollout cannot progress'}"
    return None


def rollout_complete(outcome: Outcome) -> bool:
    """The primary's rollout is complete (assessed, or judged from its digest), and the canary's if any."""
    primary = outcome.primary_before
    if outcome.primary_rollout is not None:
        done = outcome.primary_rollout.phase is Phase.COMPLETE
    elif primary is not None and primary.rollout is not None:
        done = assess(primary.rollout).phase is Phase.COMPLETE
    elif primary is not None:  # a digest without rollout state (a message from an older fleet)
        want = _desired_replicas(outcome)
        caught_up = primary.observed_generation >= primary.generation
        done = caught_up and primary.updated_replicas >= want and primary.ready_replicas >= want
    else:
        done = False
    canary = outcome.canary_rollout
    return done and (canary is None or canary.phase is Phase.COMPLETE)


def _joined(first: str, second: str | None) -> str:
    return f"{first}; {second}" if second else first


def _desired_replicas(outcome: Outcome) -> int:
    if outcome.autoscaling_min is None:
        return outcome.spec_replicas
    primary = outcome.primary_before
    if primary is not None and primary.replicas is not None:
        return max(primary.replicas, outcome.autoscaling_min)
    return outcome.autoscaling_min


def region_status_of(report: StatusReport, updated_at: str | None) -> RegionStatus:
    """The ``region_status`` entry a report is written as, about the record version ``updated_at``
    (the reconciler writes it; the fan-out's triage compares with the entry the record holds)."""
    return RegionStatus(
        state=report.state,
        replicas_ready=report.replicas_ready,
        replicas_desired=report.replicas_desired,
        replicas_updated=report.replicas_updated,
        error=bounded(report.error),
        observed_updated_at=updated_at,
    )


class StatusAction(StrEnum):
    """What to do with the region's ``region_status`` entry after a reconcile."""

    WRITE = "write"  # the store still writes only when it changed or the heartbeat is due
    REMOVE = "remove"
    KEEP = "keep"


def status_action(
    header: RecordHeader, region: str, report: StatusReport | None, cleaned: bool = True
) -> StatusAction:
    """Remove the entry of a region no longer targeted once its objects are gone (``cleaned``); never
    write an error into a region the record does not target; otherwise write."""
    if report is None:
        present = header.region_status.get(region) is not None
        return StatusAction.REMOVE if present and cleaned else StatusAction.KEEP
    if not header.targets(region) and report.state == "error":
        return StatusAction.KEEP
    return StatusAction.WRITE


def waits_for_first_look(header: RecordHeader, region: str, outcome: Outcome, report: StatusReport) -> bool:
    """Whether a new endpoint's first report waits for the look its reconcile requeues: the region has
    reported nothing for the record yet, and this reconcile created the Deployment, so the report could
    only say ``creating``. The look (``ROLLOUT_REQUEUE_SECONDS`` later) reports what it finds,
    ``running`` when the pods were ready by then: one status write where there would be two, and until
    then the region's entry is absent, as it was (``pending`` to a reader), never wrong. A report with
    an error or a note (``error``: waiting on an object still terminating, say), or over an entry
    already there (an earlier state, GCO's monitor's), is written at once."""
    return (
        report.state == "creating"
        and report.error is None
        and outcome.primary_before is None
        and header.region_status.get(region) is None
    )


def status_needs_write(
    status: RegionStatus,
    previous: Mapping[str, Any] | RegionStatus | None,
    now: datetime,
    heartbeat_seconds: int,
) -> bool:
    """Whether a region status report must be written: the state, replica counts or error changed
    against ``previous`` (what the record holds now), or ``previous.last_sync`` is older than the
    heartbeat (or missing or unreadable)."""
    before = as_status(previous)
    if before is None or not status.same_report(before):
        return True
    synced = before.last_sync_at()
    return synced is None or now - synced >= timedelta(seconds=heartbeat_seconds)


def as_status(value: Mapping[str, Any] | RegionStatus | None) -> RegionStatus | None:
    """A ``region_status`` entry as read from the record (None when absent or unreadable)."""
    if value is None or isinstance(value, RegionStatus):
        return value
    try:
        return RegionStatus.model_validate(from_dynamo(value))
    except (ValidationError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- promotion and purge


def region_state(header: RecordHeader, region: str) -> str | None:
    """The state ``region`` last reported for the record, if any."""
    entry = header.region_status.get(region)
    if isinstance(entry, Mapping):
        state = entry.get("state")
        return str(state) if state is not None else None
    return None


def current_state(header: RecordHeader, region: str) -> str | None:
    """The state ``region`` reported about the record as it is now: None when its report names another
    ``updated_at`` (it was about an earlier spec). A report without one (GCO's monitor) is taken as is."""
    entry = header.region_status.get(region)
    if isinstance(entry, Mapping):
        about = entry.get("observed_updated_at")
        if about is not None and about != header.updated_at:
            return None
    return region_state(header, region)


def target_states(header: RecordHeader) -> dict[str, str]:
    """Target region -> the state it reports about the record as it is now ("" when none)."""
    return {region: current_state(header, region) or "" for region in header.target_regions}


def reported_states(header: RecordHeader) -> dict[str, str]:
    """Every region with an entry, targeted or not -> the state it last reported."""
    return {region: region_state(header, region) or "" for region in header.region_status}


def should_promote(
    desired_state: str | None,
    target_regions: Sequence[str],
    region_states: Mapping[str, str],
) -> bool:
    """``deploying`` becomes ``running`` only when every target region reports ``running`` (regions that
    are not targeted do not count, nor block)."""
    if desired_state != "deploying" or not target_regions:
        return False
    return all(region_states.get(region) == "running" for region in target_regions)


def promotion_due(header: RecordHeader, region: str, report: StatusReport | None) -> bool:
    """Whether this region's fresh ``running`` completes the record's promotion to ``running``."""
    if report is None or report.state != "running":
        return False
    states = {**target_states(header), region: report.state}
    return should_promote(header.desired_state, header.target_regions, states)


def is_purgeable(
    desired_state: str | None,
    target_regions: Sequence[str],
    region_states: Mapping[str, str],
    reported: Mapping[str, str] | None = None,
) -> bool:
    """A ``deleted`` record whose every target region reports ``deleted``, and no region (``reported``:
    targeted or not) still ``deleting``: its objects are still held there by finalizers or dependents."""
    if desired_state != "deleted":
        return False
    if any(state == "deleting" for state in (reported or {}).values()):
        return False
    return all(region_states.get(region) == "deleted" for region in target_regions)
