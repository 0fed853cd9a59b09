"""The AWS Load Balancer Controller's limits on what we render for the shared ALB.

Where it stands in the flow: the last check of step 2 (render), on the objects as rendered; a record
that breaks a rule is refused with the field to fix. Pure. Why: docs/architecture.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from gco_tasks.core import conventions as names
from gco_tasks.core.fields import check_health_check_path, check_ingress_path
from gco_tasks.core.rendering.workload import Obj

#: Health-check interval (seconds) an ALB target group accepts.
HEALTHCHECK_INTERVAL_RANGE: Final = (5, 300)
#: A forward action's target-group weights and count.
MAX_TARGET_GROUP_WEIGHT: Final = 999
MAX_FORWARD_TARGET_GROUPS: Final = 5

Problem = tuple[str, str]  # (field path, message)

#: The record field each rendered value comes from (what the person fixes).
_FIELD: Final = {
    "path": "ingress_path",
    names.HEALTHCHECK_PATH_ANNOTATION: "spec.health_check_path",
    names.HEALTHCHECK_INTERVAL_ANNOTATION: "(rendering) healthcheck-interval-seconds",
    names.WEIGHTED_ROUTING_ANNOTATION: "spec.canary.weight",
}


def alb_problems(objects: Iterable[Obj]) -> list[Problem]:
    """Every ``(field, message)`` for a rendered ALB path or annotation the controller or AWS would
    refuse; ``[]`` when all fit. Each field once."""
    found: dict[str, Problem] = {}
    for obj in objects:
        for key, value in (obj.get("metadata", {}).get("annotations") or {}).items():
            message = _annotation_problem(key, value)
            if message is not None:
                field = _FIELD.get(key, f"(rendering) {key}")
                found.setdefault(field, (field, f"{message} ({obj['kind']} annotation {key})"))
        if obj.get("kind") == "Ingress":
            for path in _ingress_paths(obj):
                message = _check(check_ingress_path, path)
                if message is not None:
                    found.setdefault("ingress_path", ("ingress_path", message))
    return list(found.values())


def _annotation_problem(key: str, value: str) -> str | None:
    if key == names.HEALTHCHECK_PATH_ANNOTATION:
        message = _check(check_health_check_path, value)
        return None if message is None else f"as the ALB gets it (the root path included): {message}"
    if key == names.HEALTHCHECK_INTERVAL_ANNOTATION:
        low, high = HEALTHCHECK_INTERVAL_RANGE
        if not value.isdigit() or not low <= int(value) <= high:
            return f"must be a whole number of seconds from {low} to {high}"
        return None
    if key == names.WEIGHTED_ROUTING_ANNOTATION:
        return _forward_problem(value)
    return None


def _forward_problem(value: str) -> str | None:
    try:
        groups: Any = json.loads(value)["forwardConfig"]["targetGroups"]
    except (ValueError, KeyError, TypeError):
        return "must be the controller's forward action JSON"
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_FORWARD_TARGET_GROUPS:
        return f"a forward action takes 1 to {MAX_FORWARD_TARGET_GROUPS} target groups"
    weights = [group.get("weight") if isinstance(group, dict) else None for group in groups]
    if not all(isinstance(w, int) and 0 <= w <= MAX_TARGET_GROUP_WEIGHT for w in weights):
        return f"target-group weights must be whole numbers from 0 to {MAX_TARGET_GROUP_WEIGHT}"
    return None


def _ingress_paths(ingress: Obj) -> list[str]:
    return [
        str(path.get("path", ""))
        for rule in ingress.get("spec", {}).get("rules", [])
        for path in (rule.get("http") or {}).get("paths", [])
    ]


def _check(check: Any, value: str) -> str | None:
    try:
        check(value)
    except ValueError as exc:
        return str(exc)
    return None
