"""Objects on their way out: no second DELETE of an object already being deleted, no apply onto one.

Where it stands in the flow: step 4 (plan) of reconciling one endpoint or removing an orphan. More in
docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gco_tasks.core.plan import ObservedObject, Plan, plan_changes
from gco_tasks.core.rendering import object_key


def plan_around_terminating(
    desired: Sequence[Mapping[str, Any]], observed: Sequence[ObservedObject]
) -> tuple[Plan, tuple[str, ...]]:
    """The plan over the objects not being deleted, and the wanted objects still terminating
    (``"Kind/name"``: applied once they are gone)."""
    terminating = {item.key for item in observed if item.deleting}
    plan = plan_changes(desired, [item for item in observed if not item.deleting])
    waiting = tuple(
        f"{kind}/{name}" for kind, name in map(object_key, plan.apply) if (kind, name) in terminating
    )
    applies = tuple(obj for obj in plan.apply if object_key(obj) not in terminating)
    return Plan(apply=applies, delete=plan.delete), waiting


def waiting_note(waiting: Sequence[str]) -> tuple[str, ...]:
    """The status note while wanted objects still terminate."""
    return (f"waiting for {', '.join(waiting)} to finish deleting",) if waiting else ()
