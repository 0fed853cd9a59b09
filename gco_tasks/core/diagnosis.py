"""Why a rollout does not finish: the extra reads for an endpoint whose rollout is not complete.

Where it stands in the flow: step 6 of reconciling one endpoint, before its status is decided. For each
of the endpoint's Deployments (primary, canary) ``rollout.assess`` judges the digest the cycle's LIST
already holds; only when that rollout is not complete does this read more, through the ``ClusterReads``
port: one LIST of the Deployment's ReplicaSets (by its ``app`` selector) to find the newest one, and,
unless that one's pods are all ready, one LIST of its pods (by ``app`` and ``pod-template-hash``).
So a steady region reads no pods at all, and an unfinished rollout costs two label-selected LISTs.
One LIST of the pods by the Deployment's selector would not do: it returns old and new pods alike, and
only the ReplicaSets say which template is the newest (the highest ``deployment.kubernetes.io/revision``,
which a rollback also moves); the Deployment's own status names no ReplicaSet except in free text.

A refused read (a region whose Role predates the pods/replicasets grant, or the API stand-in, which
serves neither) is logged and the rollout judged from the Deployment alone: a diagnosis never stops a
reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from gco_tasks.core import conventions as names
from gco_tasks.core.errors import InfrastructureError
from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.ports import ClusterReads
from gco_tasks.core.rollout import (
    Assessment,
    Phase,
    assess,
    newest_replica_set,
    pod_problems,
    replica_set_ready,
    template_hash,
    with_pod_problems,
)

log = logging.getLogger(__name__)


def assess_rollouts(
    cluster: ClusterReads,
    observed: Iterable[ObservedObject],
    now: float | None = None,
    unschedulable_grace_seconds: float = 0,
) -> dict[str, Assessment]:
    """Deployment name -> its rollout, with the new pods read only where it is not complete (a pod
    the scheduler could not place is a problem once it has waited ``unschedulable_grace_seconds``)."""
    assessed: dict[str, Assessment] = {}
    for item in observed:
        if item.kind != "Deployment" or item.deleting or item.rollout is None:
            continue
        verdict = assess(item.rollout)
        if verdict.needs_pods and verdict.phase is not Phase.COMPLETE:
            problems = _new_pod_problems(cluster, item.name, now, unschedulable_grace_seconds)
            verdict = with_pod_problems(verdict, problems)
        assessed[item.name] = verdict
    return assessed


def _new_pod_problems(
    cluster: ClusterReads, deployment: str, now: float | None, grace_seconds: float
) -> str | None:
    try:
        pods = new_pods(cluster, deployment)
    except InfrastructureError as exc:
        log.warning("%s: cannot read its ReplicaSets or pods to explain the rollout: %s", deployment, exc)
        return None
    return pod_problems(pods, now, grace_seconds)


def new_pods(cluster: ClusterReads, deployment: str) -> list[Mapping[str, Any]]:
    """The pods of the Deployment's newest ReplicaSet; none read when they are all ready."""
    selector = f"{names.APP_LABEL}={deployment}"
    newest = newest_replica_set(cluster.list_objects(selector, ["ReplicaSet"]), deployment)
    if newest is None or replica_set_ready(newest):
        return []
    pod_hash = template_hash(newest)
    if pod_hash is None:
        return []
    return list(cluster.list_objects(f"{selector},pod-template-hash={pod_hash}", ["Pod"]))
