"""A record cannot take what is not its own: an object with our name that exists without our labels.

Where it stands in the flow: between step 4 (plan) and step 5 (apply) of reconciling one endpoint. More in
docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gco_tasks.core import conventions as names
from gco_tasks.core.plan import ObservedObject, Plan, endpoint_name_of
from gco_tasks.core.rendering import object_key


def is_ours(obj: Mapping[str, Any], endpoint: str) -> bool:
    """Labelled as an inference object of ``endpoint`` (ours, or GCO's monitor's, which we adopt)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get(names.TYPE_LABEL) != names.INFERENCE_TYPE:
        return False
    return endpoint_name_of(obj, {endpoint}) == endpoint


def claim_problem(live: Mapping[str, Any] | None, endpoint: str) -> str | None:
    """Why ``live`` (the object of the name we want to create) must not be taken; None when it is absent
    or already this endpoint's."""
    if live is None or is_ours(live, endpoint):
        return None
    metadata = live.get("metadata") or {}
    managers = sorted(
        {str(e.get("manager")) for e in metadata.get("managedFields") or [] if e.get("manager")}
    )
    made_by = f", written by {', '.join(managers)}" if managers else ""
    wanted = f"{names.TYPE_LABEL}={names.INFERENCE_TYPE}, {names.ENDPOINT_LABEL}={endpoint}"
    return (
        f"{live.get('kind')}/{metadata.get('name')} already exists in namespace {metadata.get('namespace')} "
        f"and is not this endpoint's (it lacks the labels {wanted}{made_by}): nothing was changed; "
        "delete or rename that object, rename the endpoint, or add those labels to hand it over"
    )


def creations(plan: Plan, observed: Iterable[ObservedObject]) -> list[tuple[str, str]]:
    """(kind, name) of every object the plan would create: applied, and not among the observed."""
    seen = {item.key for item in observed}
    return [key for key in map(object_key, plan.apply) if key not in seen]
