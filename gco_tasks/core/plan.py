"""The pure core of reconciliation: what is observed and what to change.

Where it stands in the flow: steps 3 and 4 of reconciling one endpoint (``reconciler``), and the rules of
``fanout`` and ``watchdog``. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from gco_tasks.core import conventions as names
from gco_tasks.core.rendering import object_key
from gco_tasks.core.results import actions
from gco_tasks.core.rollout import RolloutDigest


class ObservedObject(BaseModel):
    """What the fleet needs to know of one live object (small enough to ride in a task message)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    name: str
    uid: str | None = None  # Events are recorded on the Deployment by its uid (``kubectl describe``)
    desired_hash: str | None = None
    canary: bool = False
    replicas: int | None = None
    ready_replicas: int = 0
    updated_replicas: int = 0
    generation: int = 0
    observed_generation: int = 0
    #: A Deployment's rollout state (``rollout.assess`` judges it).
    rollout: RolloutDigest | None = None
    #: Being deleted (``deletionTimestamp`` set: finalizers or dependents still hold it).
    deleting: bool = False
    #: Fields we set that the live object does not hold (``drift.differences``, a few paths); only
    #: filled in by ``drift.digest``, which compares with the rendered object.
    drift: tuple[str, ...] = ()
    #: GCO's monitor still owns fields of it (``core.adoption``): hand them over before the next apply.
    legacy: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ObservedObject:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        digest: dict[str, Any] = {
            "kind": obj["kind"],
            "name": metadata["name"],
            "uid": metadata.get("uid"),
            "desired_hash": desired_hash(obj),
            "canary": labels.get(names.CANARY_LABEL) == "true"
            or metadata["name"].endswith(names.CANARY_SUFFIX),
            "generation": int(metadata.get("generation") or 0),
            "deleting": bool(metadata.get("deletionTimestamp")),
        }
        if obj["kind"] == "Deployment":
            spec = obj.get("spec") or {}
            status = obj.get("status") or {}
            digest.update(
                replicas=spec.get("replicas"),
                ready_replicas=int(status.get("readyReplicas") or 0),
                updated_replicas=int(status.get("updatedReplicas") or 0),
                observed_generation=int(status.get("observedGeneration") or 0),
                rollout=RolloutDigest.from_deployment(obj),
            )
        return cls.model_validate(digest)


def endpoint_name_of(obj: Mapping[str, Any], known_names: frozenset[str] | set[str]) -> str | None:
    """The endpoint an object belongs to: our ``gco.io/endpoint`` label, else (objects GCO's own monitor
    made, which we adopt) its ``app`` label, with the ``-canary`` suffix of a canary taken off when that
    names a known endpoint. None for an object we cannot attribute (it is left alone)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(names.ENDPOINT_LABEL):
        return str(labels[names.ENDPOINT_LABEL])
    app = labels.get(names.APP_LABEL)
    if not app:
        return None
    return names.endpoint_of_app(str(app), known_names)


def objects_by_endpoint(
    objects: Iterable[Mapping[str, Any]], known_names: frozenset[str] | set[str]
) -> dict[str, list[Mapping[str, Any]]]:
    """The live objects of each endpoint (``plan.endpoint_name_of``); objects of no endpoint are left
    alone."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        name = endpoint_name_of(obj, known_names)
        if name is not None:
            grouped.setdefault(name, []).append(obj)
    return grouped


def desired_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(names.HASH_ANNOTATION)
    return str(value) if value is not None else None


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """What to change in the cluster: objects to apply (whole desired content) and keys to delete."""

    apply: tuple[dict[str, Any], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.apply and not self.delete

    def describe(self) -> list[str]:
        """Its actions as a result shows them (``results.actions``: ``apply Deployment/demo``)."""
        applied = [f"{kind}/{name}" for kind, name in map(object_key, self.apply)]
        return actions(applied, [f"{kind}/{name}" for kind, name in self.delete])


def plan_changes(desired: Sequence[Mapping[str, Any]], observed: Sequence[ObservedObject]) -> Plan:
    """Apply every desired object that is absent, whose stamped hash differs, that drifted (a field we
    set no longer holds our value) or that GCO's monitor still co-owns; delete every observed object
    that is not desired. Nothing else: an endpoint in sync gives an empty plan."""
    live = {item.key: item for item in observed}
    wanted = {object_key(obj): obj for obj in desired}
    to_apply = [dict(obj) for key, obj in wanted.items() if key not in live or _stale(live[key], obj)]
    to_delete = [key for key in live if key not in wanted]
    to_apply.sort(key=lambda obj: names.apply_rank(obj["kind"]))
    to_delete.sort(key=lambda key: names.delete_rank(key[0]))
    return Plan(apply=tuple(to_apply), delete=tuple(to_delete))


def _stale(live: ObservedObject, desired: Mapping[str, Any]) -> bool:
    return live.desired_hash != desired_hash(desired) or bool(live.drift) or live.legacy


def without_ingress(desired: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The desired objects less the Ingress: what a watchdog-withheld endpoint may have."""
    return [obj for obj in desired if obj["kind"] != "Ingress"]


def primary_deployment(name: str, observed: Iterable[ObservedObject]) -> ObservedObject | None:
    return next((o for o in observed if o.kind == "Deployment" and o.name == name), None)


@dataclass(frozen=True)
class Withholding:
    """The watchdog's rule applied to one reconcile: the objects to plan for, a note for the status, and
    whether the withholding ends now (the primary has a ready replica again)."""

    desired: list[dict[str, Any]]
    notes: tuple[str, ...] = ()
    release: bool = False


def apply_withholding(
    name: str,
    desired: list[dict[str, Any]],
    observed: Iterable[ObservedObject],
    withheld: bool,
    threshold_seconds: int,
) -> Withholding:
    """A withheld endpoint gets no Ingress until its primary has a ready replica again; then the
    withholding ends within the cycle that sees the recovery."""
    if not withheld or not any(obj["kind"] == "Ingress" for obj in desired):
        return Withholding(desired)
    primary = primary_deployment(name, observed)
    if primary is not None and primary.ready_replicas > 0:
        return Withholding(desired, release=True)
    note = f"Ingress withheld by the watchdog: 0 ready replicas for over {threshold_seconds}s"
    return Withholding(without_ingress(desired), (note,))
