"""Autoscaling on and off without moving the replica count: ``spec.replicas`` handed to the HPA and back.

Where it stands in the flow: step 5 (apply) of reconciling one endpoint. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gco_tasks.core import conventions as names
from gco_tasks.core.plan import ObservedObject, Plan
from gco_tasks.core.rendering import object_key


def handover_candidates(plan: Plan, observed: Iterable[ObservedObject]) -> list[str]:
    """Deployments the plan applies without ``spec.replicas`` that exist already: where an HPA may be
    about to take the count over (it is looked at closer, with a GET, only then)."""
    live = {item.key for item in observed if not item.deleting}
    return [
        obj["metadata"]["name"]
        for obj in plan.apply
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"] and object_key(obj) in live
    ]


def owns_replicas(obj: Mapping[str, Any], manager: str = names.FIELD_MANAGER) -> bool:
    """Whether ``manager`` owns ``spec.replicas`` of the live object through an apply."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply" or entry.get("subresource"):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in spec:
            return True
    return False


def replicas_handover(live: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The replicas-only apply that keeps ``spec.replicas`` at its current value when we stop setting it;
    None when we do not own it (the HPA, or an earlier handover, already does) or there is nothing to
    keep: at 0 (a ``start`` after ``stop``) the count must not stay there, since an HPA never scales a
    target at 0; the API server's default (1) lets the HPA raise it to ``minReplicas``."""
    if live is None or not owns_replicas(live):
        return None
    replicas = (live.get("spec") or {}).get("replicas")
    if not replicas:
        return None
    metadata = live["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "spec": {"replicas": replicas},
    }


def hpa_deletions_first(plan: Plan) -> tuple[Plan, Plan]:
    """(the HPAs to delete before anything is applied, the rest of the plan): when the plan applies a
    Deployment, an HPA no longer wanted goes first; otherwise the plan keeps its order."""
    if not any(obj["kind"] == "Deployment" for obj in plan.apply):
        return Plan(), plan
    first = tuple(key for key in plan.delete if key[0] == "HorizontalPodAutoscaler")
    rest = tuple(key for key in plan.delete if key[0] != "HorizontalPodAutoscaler")
    return Plan(delete=first), Plan(apply=plan.apply, delete=rest)
