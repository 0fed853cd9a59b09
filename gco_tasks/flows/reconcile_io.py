"""The reconcile's reads and writes beside apply and delete, each behind a port: the GET of every object
it would create (``ownership``), the hand-over of ``spec.replicas`` to an HPA (``hpa_handover``), and the
pods that explain an unfinished rollout (``diagnosis``).

Where it stands in the flow: inside steps 4 to 6 of ``reconciler``; the decisions are the core's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from gco_tasks.core import conventions as names
from gco_tasks.core.diagnosis import judge_rollouts, pods_wanted, with_new_pods
from gco_tasks.core.errors import InfrastructureError
from gco_tasks.core.hpa_handover import replicas_handover
from gco_tasks.core.ownership import claim_problem
from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.ports import ClusterGets, ClusterReads, ClusterWrites
from gco_tasks.core.rollout import Assessment, newest_replica_set, replica_set_ready, template_hash

log = logging.getLogger(__name__)


class HandoverCluster(ClusterGets, ClusterWrites, Protocol): ...


def foreign_objects(reads: ClusterGets, endpoint: str, keys: Iterable[tuple[str, str]]) -> list[str]:
    """The refusal of each object we would create that exists and is not this endpoint's (a GET each)."""
    found = (claim_problem(reads.get_object(kind, name), endpoint) for kind, name in keys)
    return [problem for problem in found if problem is not None]


def hand_over(cluster: HandoverCluster, deployments: Iterable[str]) -> list[str]:
    """Give each Deployment's ``spec.replicas`` to the handover manager where we still own it; returns
    the names handed over. A 409 (the object changed since the GET) is transient: the reconcile retries."""
    handed: list[str] = []
    for name in deployments:
        body = replicas_handover(cluster.get_object("Deployment", name))
        if body is not None:
            cluster.apply(body, field_manager=names.HANDOVER_MANAGER, force=False)
            handed.append(name)
    return handed


def assess_rollouts(
    cluster: ClusterReads,
    observed: Iterable[ObservedObject],
    now: float | None = None,
    unschedulable_grace_seconds: float = 0,
) -> dict[str, Assessment]:
    """Deployment name -> its rollout, with the new pods read only where it is not complete. A refused
    read (a Role without the pods/replicasets grant) is logged and the rollout judged from the
    Deployment alone: a diagnosis never stops a reconcile."""
    assessed = judge_rollouts(observed)
    pods = {name: _readable_new_pods(cluster, name) for name in pods_wanted(assessed)}
    return with_new_pods(assessed, pods, now, unschedulable_grace_seconds)


def _readable_new_pods(cluster: ClusterReads, deployment: str) -> list[Mapping[str, Any]] | None:
    try:
        return new_pods(cluster, deployment)
    except InfrastructureError as exc:
        log.warning("%s: cannot read its ReplicaSets or pods to explain the rollout: %s", deployment, exc)
        return None


def new_pods(cluster: ClusterReads, deployment: str) -> list[Mapping[str, Any]]:
    """The pods of the Deployment's newest ReplicaSet (one LIST of its ReplicaSets by ``app``, then one of
    their pods by ``pod-template-hash``); none read when they are all ready."""
    selector = f"{names.APP_LABEL}={deployment}"
    newest = newest_replica_set(cluster.list_objects(selector, ["ReplicaSet"]), deployment)
    if newest is None or replica_set_ready(newest):
        return []
    pod_hash = template_hash(newest)
    if pod_hash is None:
        return []
    return list(cluster.list_objects(f"{selector},pod-template-hash={pod_hash}", ["Pod"]))
