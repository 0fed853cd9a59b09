"""Why a rollout does not finish: each Deployment's rollout judged from its digest, then, for one that is
not complete, from the pods of its newest ReplicaSet.

Where it stands in the flow: step 6 of reconciling one endpoint, before its status is decided. Pure: the
reconcile reads the pods of those ``pods_wanted`` names (``flows.reconcile_io.new_pods``), none otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.rollout import Assessment, Phase, assess, pod_problems, with_pod_problems


def judge_rollouts(observed: Iterable[ObservedObject]) -> dict[str, Assessment]:
    """Deployment name -> its rollout as its digest tells it (Deployments being deleted left out)."""
    return {
        item.name: assess(item.rollout)
        for item in observed
        if item.kind == "Deployment" and not item.deleting and item.rollout is not None
    }


def pods_wanted(assessed: Mapping[str, Assessment]) -> list[str]:
    """The Deployments whose unfinished rollout the pods of their newest ReplicaSet may explain."""
    return [
        name
        for name, verdict in assessed.items()
        if verdict.needs_pods and verdict.phase is not Phase.COMPLETE
    ]


def with_new_pods(
    assessed: Mapping[str, Assessment],
    pods: Mapping[str, Sequence[Mapping[str, Any]] | None],
    now: float | None = None,
    unschedulable_grace_seconds: float = 0,
) -> dict[str, Assessment]:
    """Each rollout with what its new pods say (``pods``: by Deployment; None when they could not be
    read); a pod the scheduler could not place is a problem once it has waited the grace."""
    judged = dict(assessed)
    for name, found in pods.items():
        problems = pod_problems(found, now, unschedulable_grace_seconds) if found is not None else None
        judged[name] = with_pod_problems(judged[name], problems)
    return judged
