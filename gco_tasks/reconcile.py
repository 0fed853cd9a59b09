"""The pure core of reconciliation: observed digest, plan, status and the fleet's other decisions.

Where it stands in the flow: steps 3, 4 and 6 of ``reconcile_endpoint`` (and the decisions of ``fan_out``,
``watchdog`` and ``purge``). Everything here is a function of its arguments: no Kubernetes, DynamoDB or
Redis. ``gco_tasks.fleet`` feeds it what the adapters read and carries out what it decides.

- ``ObservedObject`` is the small digest of a live object that ``fan_out`` carries in each message
  (kind, name, the desired-content hash we stamped on it, and a Deployment's replica counts), so an
  endpoint that is already in sync costs no further API call.
- ``plan_changes`` compares rendered objects with the digests by that hash: apply what is missing or
  differs, delete what exists but is no longer wanted.
- ``status_report`` turns the outcome into the region's status; ``should_promote``, ``is_purgeable`` and
  ``judge_health`` are the promotion, purge and watchdog rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from gco_tasks.manifests import CANARY_LABEL, ENDPOINT_LABEL, HASH_ANNOTATION, object_key

CANARY_SUFFIX = "-canary"

#: Deletion order: traffic first (Ingress), then scaling, then the Service, the pods last.
DELETE_ORDER = ("Ingress", "HorizontalPodAutoscaler", "Service", "Deployment")
#: Apply order: pods first, so a Service or Ingress never points at nothing for longer than needed.
APPLY_ORDER = ("Deployment", "Service", "HorizontalPodAutoscaler", "Ingress")


class ObservedObject(BaseModel):
    """What the fleet needs to know of one live object (small enough to ride in a task message)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    name: str
    desired_hash: str | None = None
    canary: bool = False
    replicas: int | None = None
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 0
    observed_generation: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ObservedObject:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        digest: dict[str, Any] = {
            "kind": obj["kind"],
            "name": metadata["name"],
            "desired_hash": annotations.get(HASH_ANNOTATION),
            "canary": labels.get(CANARY_LABEL) == "true" or metadata["name"].endswith(CANARY_SUFFIX),
            "generation": int(metadata.get("generation") or 0),
        }
        if obj["kind"] == "Deployment":
            spec = obj.get("spec") or {}
            status = obj.get("status") or {}
            digest.update(
                replicas=spec.get("replicas"),
                ready_replicas=int(status.get("readyReplicas") or 0),
                updated_replicas=int(status.get("updatedReplicas") or 0),
                observed_generation=int(status.get("observedGeneration") or 0),
            )
        return cls.model_validate(digest)


def endpoint_name_of(obj: Mapping[str, Any], known_names: frozenset[str] | set[str]) -> str | None:
    """The endpoint an object belongs to: our ``gco.io/endpoint`` label, else (objects GCO's own monitor
    made, which we adopt) its ``app`` label, with the ``-canary`` suffix of a canary taken off when that
    names a known endpoint. None for an object we cannot attribute (it is left alone)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(ENDPOINT_LABEL):
        return str(labels[ENDPOINT_LABEL])
    app = labels.get("app")
    if not app:
        return None
    if app not in known_names and app.endswith(CANARY_SUFFIX) and app[: -len(CANARY_SUFFIX)] in known_names:
        return str(app[: -len(CANARY_SUFFIX)])
    return str(app)


def group_by_endpoint(
    objects: Iterable[Mapping[str, Any]], known_names: frozenset[str] | set[str]
) -> dict[str, list[ObservedObject]]:
    grouped: dict[str, list[ObservedObject]] = {}
    for obj in objects:
        name = endpoint_name_of(obj, known_names)
        if name is not None:
            grouped.setdefault(name, []).append(ObservedObject.from_object(obj))
    return grouped


def desired_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(HASH_ANNOTATION)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class Plan:
    """What to change in the cluster: objects to apply (whole desired content) and keys to delete."""

    apply: tuple[dict[str, Any], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.apply and not self.delete

    def describe(self) -> list[str]:
        """Human-readable actions, e.g. ``apply Deployment/demo``, for the task result and logs."""
        applied = [f"apply {kind}/{name}" for kind, name in map(object_key, self.apply)]
        return applied + [f"delete {kind}/{name}" for kind, name in self.delete]


def plan_changes(desired: Sequence[Mapping[str, Any]], observed: Sequence[ObservedObject]) -> Plan:
    """Apply every desired object that is absent or whose stamped hash differs; delete every observed
    object that is not desired. Nothing else: an endpoint in sync gives an empty plan."""
    live = {item.key: item for item in observed}
    wanted = {object_key(obj): obj for obj in desired}
    to_apply = [
        dict(obj)
        for key, obj in wanted.items()
        if key not in live or live[key].desired_hash != desired_hash(obj)
    ]
    to_delete = [key for key in live if key not in wanted]
    to_apply.sort(key=lambda obj: APPLY_ORDER.index(obj["kind"]) if obj["kind"] in APPLY_ORDER else 99)
    to_delete.sort(key=lambda key: DELETE_ORDER.index(key[0]) if key[0] in DELETE_ORDER else 99)
    return Plan(apply=tuple(to_apply), delete=tuple(to_delete))


def _differs(live: ObservedObject | None, obj: Mapping[str, Any]) -> bool:
    return live is None or live.desired_hash != desired_hash(obj)


def without_ingress(desired: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The desired objects less the Ingress: what a watchdog-withheld endpoint may have."""
    return [obj for obj in desired if obj["kind"] != "Ingress"]


@dataclass(frozen=True)
class StatusReport:
    """The region's status of one endpoint, before it becomes a DynamoDB ``region_status`` entry."""

    state: str
    replicas_ready: int = 0
    replicas_desired: int = 0
    error: str | None = None
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


def primary_deployment(name: str, observed: Iterable[ObservedObject]) -> ObservedObject | None:
    return next((o for o in observed if o.kind == "Deployment" and o.name == name), None)


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


def is_purgeable(
    desired_state: str | None, target_regions: Sequence[str], region_states: Mapping[str, str]
) -> bool:
    """A ``deleted`` record whose every target region reports ``deleted``."""
    if desired_state != "deleted":
        return False
    return all(region_states.get(region) == "deleted" for region in target_regions)


@dataclass(frozen=True)
class HealthVerdict:
    """The watchdog's decisions for one pass."""

    start_clocks: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()
    withhold: tuple[str, ...] = ()


def judge_health(
    deployments: Iterable[ObservedObject],
    clocks: Mapping[str, float],
    withheld: Iterable[str],
    now: float,
    threshold_seconds: float,
) -> HealthVerdict:
    """Primary Deployments at 0 ready replicas (and not stopped) start a clock; past the threshold their
    Ingress is withheld. A healthy or stopped endpoint clears its clock and any withholding."""
    already = set(withheld)
    start: list[str] = []
    clear: list[str] = []
    withhold: list[str] = []
    for deployment in deployments:
        if deployment.canary:
            continue
        name = deployment.name
        unhealthy = deployment.ready_replicas == 0 and (
            deployment.replicas is None or deployment.replicas > 0
        )
        if not unhealthy:
            if name in clocks or name in already:
                clear.append(name)
            continue
        since = clocks.get(name)
        if since is None:
            start.append(name)
        elif now - since > threshold_seconds and name not in already:
            withhold.append(name)
    return HealthVerdict(tuple(start), tuple(clear), tuple(withhold))
