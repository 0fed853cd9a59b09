"""The pure rules of step 6: what status a region reports for an endpoint, whether it is written, and
the promotion and purge rules that read the statuses of every region.

Where it stands in the flow: after apply. ``reconciler`` builds an ``Outcome`` (what it found and did),
``status_report`` turns it into the region's status, ``status_action`` says whether to write it, remove
the region's entry or leave it, and the store writes only when ``status_needs_write`` says the report
changed or its heartbeat is due. ``promotion_due`` (``deploying`` -> ``running``) and ``is_purgeable``
read every target region's last report. Pure: no I/O, and the clock comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from gco_tasks.endpoints import Endpoint, RecordHeader, RegionStatus
from gco_tasks.fields import from_dynamo
from gco_tasks.plan import ObservedObject, Plan, primary_deployment


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


def outcome_of(
    endpoint: Endpoint,
    region: str,
    observed: Sequence[ObservedObject],
    plan: Plan,
    error: str | None,
    notes: tuple[str, ...],
) -> Outcome:
    """The ``Outcome`` of reconciling ``endpoint`` in ``region``: what was there, what the plan touched."""
    name = endpoint.endpoint_name
    autoscaling = endpoint.spec.autoscaling
    return Outcome(
        desired_state=endpoint.desired_state,
        targeted=endpoint.targets(region),
        spec_replicas=endpoint.spec.replicas,
        autoscaling_min=autoscaling.min_replicas if autoscaling and autoscaling.enabled else None,
        primary_before=primary_deployment(name, observed),
        primary_applied=any(
            obj["kind"] == "Deployment" and obj["metadata"]["name"] == name for obj in plan.apply
        ),
        error=error,
        notes=notes,
    )


def status_report(outcome: Outcome) -> StatusReport | None:
    """The status to report, or None when the region's entry should be removed (no longer targeted)."""
    primary = outcome.primary_before
    ready = primary.ready_replicas if primary else 0
    if outcome.error:
        return StatusReport("error", ready, outcome.spec_replicas, outcome.error)
    if not outcome.targeted and outcome.desired_state != "deleted":
        return None
    if outcome.desired_state == "deleted":
        return StatusReport("deleted")
    if outcome.desired_state == "stopped":
        return StatusReport("stopped")
    desired = _desired_replicas(outcome)
    note = "; ".join(outcome.notes) or None
    if primary is None:
        return StatusReport("creating", 0, desired, note)
    updated = primary.updated_replicas
    if outcome.primary_applied:
        return StatusReport("updating", ready, desired, note, updated)
    rolled_out = primary.observed_generation >= primary.generation and updated >= desired
    if ready >= desired and rolled_out:
        return StatusReport("running", ready, desired, note, updated)
    return StatusReport("creating" if ready == 0 else "updating", ready, desired, note, updated)


def _desired_replicas(outcome: Outcome) -> int:
    if outcome.autoscaling_min is None:
        return outcome.spec_replicas
    primary = outcome.primary_before
    if primary is not None and primary.replicas is not None:
        return max(primary.replicas, outcome.autoscaling_min)
    return outcome.autoscaling_min


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


def status_needs_write(
    status: RegionStatus,
    previous: Mapping[str, Any] | RegionStatus | None,
    now: datetime,
    heartbeat_seconds: int,
) -> bool:
    """Whether a region status report must be written: the state, replica counts or error changed
    against ``previous`` (what the record holds now), or ``previous.last_sync`` is older than the
    heartbeat (or missing or unreadable)."""
    before = _as_status(previous)
    if before is None or not status.same_report(before):
        return True
    synced = before.last_sync_at()
    return synced is None or now - synced >= timedelta(seconds=heartbeat_seconds)


def _as_status(value: Mapping[str, Any] | RegionStatus | None) -> RegionStatus | None:
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


def target_states(header: RecordHeader) -> dict[str, str]:
    """Target region -> its reported state ("" when it has reported nothing)."""
    return {region: region_state(header, region) or "" for region in header.target_regions}


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
    desired_state: str | None, target_regions: Sequence[str], region_states: Mapping[str, str]
) -> bool:
    """A ``deleted`` record whose every target region reports ``deleted``."""
    if desired_state != "deleted":
        return False
    return all(region_states.get(region) == "deleted" for region in target_regions)
