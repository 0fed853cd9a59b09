"""Rollout health: is a Deployment's rollout complete, still progressing, or unable to progress, and why.

Where it stands in the flow: step 6 (report) of reconciling one endpoint, as gitops-engine's health package
stands beside its sync. More in docs/architecture.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from gco_tasks.core.fields import parse_timestamp

REVISION_ANNOTATION: Final = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH_LABEL: Final = "pod-template-hash"
#: Conditions worth carrying: why a rollout cannot go on.
KEPT_CONDITIONS: Final = ("Progressing", "ReplicaFailure")
MESSAGE_LIMIT: Final = 600

#: Waiting reasons of a container whose image cannot be pulled (kubelet's ``images`` package).
PULL_REASONS: Final = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
#: Waiting reasons of a container that cannot start for its own configuration.
START_REASONS: Final = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreStartHookError"}
)
CRASH_REASON: Final = "CrashLoopBackOff"


class Phase(StrEnum):
    COMPLETE = "complete"
    PROGRESSING = "progressing"
    FAILED = "failed"  # cannot progress without a change: the region reports ``error``


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    status: str
    reason: str = ""
    message: str = ""


class RolloutDigest(BaseModel):
    """What ``assess`` needs of a live Deployment."""

    model_config = ConfigDict(frozen=True)

    generation: int = 0
    observed_generation: int = 0
    spec_replicas: int = 1  # Kubernetes' default when unset
    paused: bool = False
    replicas: int = 0  # every pod of every ReplicaSet
    updated_replicas: int = 0  # pods of the current template
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_deployment(cls, obj: Mapping[str, Any]) -> RolloutDigest:
        metadata, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        status = obj.get("status") or {}
        replicas = spec.get("replicas")
        return cls(
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            spec_replicas=1 if replicas is None else int(replicas),
            paused=bool(spec.get("paused")),
            replicas=int(status.get("replicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            conditions=tuple(_kept_conditions(status.get("conditions") or [])),
        )

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    @property
    def complete(self) -> bool:
        want = self.spec_replicas
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas == want
            and self.replicas == self.updated_replicas
            and self.available_replicas >= want
        )


def _kept_conditions(conditions: Iterable[Mapping[str, Any]]) -> Iterable[Condition]:
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") in KEPT_CONDITIONS:
            yield Condition(
                type=str(condition["type"]),
                status=str(condition.get("status", "")),
                reason=str(condition.get("reason") or ""),
                message=_short(str(condition.get("message") or "")),
            )


@dataclass(frozen=True)
class Assessment:
    """The verdict on one rollout. ``needs_pods``: the reason, if any, is to be found in the new pods."""

    phase: Phase
    message: str | None = None
    needs_pods: bool = False


def assess(digest: RolloutDigest) -> Assessment:
    """Judge a rollout from the Deployment alone (docs/architecture.md)."""
    if digest.observed_generation < digest.generation:
        return Assessment(Phase.PROGRESSING, "waiting for the Deployment controller to see the change")
    failure = digest.condition("ReplicaFailure")
    if failure is not None and failure.status == "True":
        return Assessment(Phase.FAILED, f"pods cannot be created: {failure.message or failure.reason}")
    if digest.complete:
        return Assessment(Phase.COMPLETE)
    if digest.paused:
        return Assessment(Phase.PROGRESSING, "the rollout is paused (spec.paused)")
    progressing = digest.condition("Progressing")
    if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
        message = f"the rollout made no progress within progressDeadlineSeconds ({progressing.message})"
        return Assessment(Phase.FAILED, message, needs_pods=True)
    counts = (
        f"{digest.updated_replicas} of {digest.spec_replicas} replicas updated, "
        f"{digest.available_replicas} available"
    )
    if digest.replicas > digest.updated_replicas:
        counts += f", {digest.replicas - digest.updated_replicas} old still running"
    return Assessment(Phase.PROGRESSING, counts, needs_pods=True)


def with_pod_problems(assessment: Assessment, problems: str | None) -> Assessment:
    """The assessment once the new pods were read: a problem that stops them makes it ``FAILED``."""
    if not problems:
        return assessment
    if assessment.phase is Phase.FAILED and assessment.message:
        return Assessment(Phase.FAILED, f"{problems} ({assessment.message})")
    return Assessment(Phase.FAILED, problems)


# --------------------------------------------------------------------------- ReplicaSets and pods


def newest_replica_set(
    replica_sets: Iterable[Mapping[str, Any]], deployment: str
) -> Mapping[str, Any] | None:
    """The Deployment's current ReplicaSet: the one with the highest revision among those it owns (the
    controller gives the new one the next revision, also on a rollback to an old template)."""
    owned = [rs for rs in replica_sets if _owned_by(rs, deployment)]
    return max(owned, key=_revision, default=None)


def replica_set_ready(replica_set: Mapping[str, Any]) -> bool:
    """Every pod the ReplicaSet wants is ready: nothing in its pods to explain."""
    want = int((replica_set.get("spec") or {}).get("replicas") or 0)
    return int((replica_set.get("status") or {}).get("readyReplicas") or 0) >= want


def template_hash(replica_set: Mapping[str, Any]) -> str | None:
    labels = (replica_set.get("metadata") or {}).get("labels") or {}
    value = labels.get(POD_TEMPLATE_HASH_LABEL)
    return str(value) if value else None


def _owned_by(replica_set: Mapping[str, Any], deployment: str) -> bool:
    owners = (replica_set.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == "Deployment" and o.get("name") == deployment for o in owners)


def _revision(replica_set: Mapping[str, Any]) -> int:
    annotations = (replica_set.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(REVISION_ANNOTATION, 0))
    except (TypeError, ValueError):
        return 0


def pod_problems(
    pods: Sequence[Mapping[str, Any]], now: float | None = None, unschedulable_grace_seconds: float = 0
) -> str | None:
    """Why the new pods do not become ready, in the words a person acts on; None when nothing stops
    them (they may simply be starting). ``pods`` are the pods of the newest ReplicaSet. A pod the
    scheduler could not place counts only once it has waited ``unschedulable_grace_seconds`` (at
    ``now``): on EKS a new GPU pod is unschedulable until Karpenter or the cluster autoscaler has
    brought its node up, which takes minutes."""
    alive = [pod for pod in pods if not (pod.get("metadata") or {}).get("deletionTimestamp")]
    total = len(alive)
    if not total:
        return None
    found: list[str] = []
    waited = partial(_unschedulable, now=now, grace_seconds=unschedulable_grace_seconds)
    unschedulable = [message for pod in alive if (message := waited(pod)) is not None]
    if unschedulable:
        found.append(f"{total - len(unschedulable)} of {total} new pods can be scheduled: {unschedulable[0]}")
    found += _container_problems(alive, total)
    return "; ".join(found) or None


def _unschedulable(pod: Mapping[str, Any], now: float | None, grace_seconds: float) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            since = parse_timestamp(condition.get("lastTransitionTime"))
            waited = None if now is None or since is None else now - since.timestamp()
            if waited is not None and waited < grace_seconds:
                return None  # a node for it may be on its way
            return _short(str(condition.get("message") or "no node fits the pod"))
    return None


def _container_problems(pods: Sequence[Mapping[str, Any]], total: int) -> list[str]:
    """One sentence per (kind of problem, image or container), counting the pods it affects."""
    seen: Counter[tuple[str, str]] = Counter()
    details: dict[tuple[str, str], str] = {}
    for pod in pods:
        in_pod = dict(problem for status in _statuses(pod) if (problem := _problem(status)) is not None)
        for key, detail in in_pod.items():
            seen[key] += 1
            details.setdefault(key, detail)
    return [
        _sentence(kind, subject, details[(kind, subject)], n, total) for (kind, subject), n in seen.items()
    ]


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _problem(status: Mapping[str, Any]) -> tuple[tuple[str, str], str] | None:
    """What stops one container, in words that stay the same while it lasts (a changing text would be
    a new status write each cycle): the kubelet alternates ErrImagePull and ImagePullBackOff, and a
    crashing container is briefly running between its back-offs."""
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    name, image = str(status.get("name") or "?"), str(status.get("image") or "?")
    if reason in PULL_REASONS:
        return ("pull", image), "ImagePullBackOff" if reason == "ErrImagePull" else reason
    last = ((status.get("lastState") or {}).get("terminated") or {}).get("exitCode")
    crashed = bool(last) and int(status.get("restartCount") or 0) > 0 and not status.get("ready")
    if reason == CRASH_REASON or crashed:
        exit_code = f", last exit code {last}" if last is not None else ""
        return ("crash", f"{name} (image {image})"), f"{CRASH_REASON}{exit_code}"
    if reason in START_REASONS:
        message = _short(str(waiting.get("message") or ""))
        return ("start", name), f"{reason}: {message}" if message else reason
    return None


def _sentence(kind: str, subject: str, detail: str, count: int, total: int) -> str:
    if kind == "pull":
        return f"image {subject} cannot be pulled on {count} of {total} new pods ({detail})"
    if kind == "crash":
        return f"container {subject} keeps crashing on {count} of {total} new pods ({detail})"
    return f"container {subject} cannot start on {count} of {total} new pods ({detail})"


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."
