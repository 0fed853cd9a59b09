"""Repairing a malformed record: what is wrong with it, field by field, and what would be written.

Where it stands in the flow: outside the fleet, behind ``gco-tasks endpoints repair NAME``. More in
docs/architecture.md.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from pydantic import ValidationError

from gco_tasks.core.fields import _is_type_tag, _message, from_dynamo, iso_now, json_fallback
from gco_tasks.core.records import DesiredState, Endpoint
from gco_tasks.core.redaction import REDACTED, redact_env, redact_spec
from gco_tasks.core.regions import AWS_COMMERCIAL_REGIONS, closest_region, region_problem

Loc = tuple[str | int, ...]


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


#: The value of a field that is absent.
MISSING: Final = _Missing()
MAX_PASSES: Final = 100
DESIRED_STATES: Final[tuple[str, ...]] = get_args(DesiredState)

#: Spec fields whose invalid value is simply removed, so GCO's default applies.
_DEFAULTED_SPEC_FIELDS: Final = frozenset(
    {"port", "replicas", "gpu_count", "health_check_path", "accelerator", "gpu_type"}
)


class PathError(ValueError):
    """A ``--set``/``--unset`` path that cannot be parsed or does not fit the record."""


@dataclass(frozen=True)
class Change:
    """One field the repair changes: what was wrong, and the value before and after (``MISSING`` when
    absent)."""

    path: str
    problem: str
    before: Any
    after: Any = MISSING


@dataclass
class RepairPlan:
    """The repaired item and how it came about. ``unresolved`` lists ``(path, problem)`` that need the
    operator; when it is empty, ``item`` validates and ``written_keys`` are the top-level keys to write."""

    item: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)

    @property
    def written_keys(self) -> list[str]:
        keys = dict.fromkeys(str(parse_path(change.path)[0]) for change in self.changes)
        return list(keys)


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------

_PATH_HELP: Final = "e.g. spec.port, spec.env.MY_VAR, spec.autoscaling.metrics[0].type, labels[a.b/c]"


def parse_path(path: str) -> Loc:
    """``spec.autoscaling.metrics[0].type`` -> ``("spec", "autoscaling", "metrics", 0, "type")``;
    ``labels[example.com/team]`` -> ``("labels", "example.com/team")``."""
    parts: list[str | int] = []
    position = 0
    while position < len(path):
        if path[position] == "[":
            end = path.find("]", position)
            inner = path[position + 1 : end] if end > position else ""
            if not inner:
                raise PathError(f"cannot read the path {path!r} ({_PATH_HELP})")
            parts.append(int(inner) if inner.isdigit() else inner)
            position = end + 1
            continue
        if parts:
            if path[position] != ".":
                raise PathError(f"cannot read the path {path!r} ({_PATH_HELP})")
            position += 1
        end = position
        while end < len(path) and path[end] not in ".[]":
            end += 1
        if end == position:
            raise PathError(f"cannot read the path {path!r} ({_PATH_HELP})")
        parts.append(path[position:end])
        position = end
    if not parts:
        raise PathError(f"cannot read the path {path!r} ({_PATH_HELP})")
    return tuple(parts)


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out or "(record)"


def get_path(item: Any, loc: Loc) -> Any:
    """The value at ``loc``, or ``MISSING``."""
    current = item
    for part in loc:
        if not _has(current, part):
            return MISSING
        current = current[part]
    return current


def _has(container: Any, part: str | int) -> bool:
    if isinstance(part, int):
        return isinstance(container, list) and -len(container) <= part < len(container)
    return isinstance(container, Mapping) and part in container


def set_path(item: dict[str, Any], loc: Loc, value: Any) -> None:
    """Set ``loc`` to ``value``, creating maps on the way; ``PathError`` when a list index is out of
    range or a non-map is in the way."""
    current: Any = item
    for depth, part in enumerate(loc[:-1]):
        following = get_path(current, (part,))
        if following is MISSING or (not isinstance(following, dict | list)):
            if isinstance(part, int):
                raise PathError(f"{format_path(loc[: depth + 1])} does not exist")
            following = {}
            current[part] = following
        current = following
    last = loc[-1]
    if isinstance(last, int):
        if not isinstance(current, list) or not -len(current) <= last < len(current):
            raise PathError(f"{format_path(loc)} does not exist")
        current[last] = value
    elif isinstance(current, dict):
        current[last] = value
    else:
        raise PathError(f"{format_path(loc[:-1])} is not a map")


def del_path(item: dict[str, Any], loc: Loc) -> bool:
    """Remove ``loc`` (a map key or a list item); False when it was not there."""
    parent = get_path(item, loc[:-1])
    last = loc[-1]
    if isinstance(last, int) and isinstance(parent, list) and -len(parent) <= last < len(parent):
        del parent[last]
        return True
    if isinstance(last, str) and isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    return False


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, lists, maps, quoted strings), else
    the text itself (``--set spec.image=nginx:1.27``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# --------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------


def plan_repair(
    item: Mapping[str, Any],
    sets: Sequence[tuple[str, Any]] = (),
    unsets: Sequence[str] = (),
    known: Sequence[str] = AWS_COMMERCIAL_REGIONS,
    allow_unknown_region: bool = False,
) -> RepairPlan:
    """The repair of ``item``: the operator's ``sets``/``unsets`` first, then the safe fixes, until the
    record validates or only problems without a safe fix remain. Raises ``PathError`` for a bad path."""
    plan = RepairPlan(copy.deepcopy(from_dynamo(dict(item))))
    name = plan.item.get("endpoint_name")
    for path, value in sets:
        loc = parse_path(path)
        _protect_key(loc)
        _apply(plan, loc, "set by --set", value)
    for path in unsets:
        loc = parse_path(path)
        _protect_key(loc)
        if get_path(plan.item, loc) is MISSING:
            raise PathError(f"{path} is not in the record (nothing to --unset)")
        _apply(plan, loc, "removed by --unset", MISSING)
    for _ in range(MAX_PASSES):  # one fix per pass: a removed list item shifts the ones after it
        problems = _validation_problems(plan.item)
        if not problems:
            break
        fix = next(
            filter(None, (_safe_fix(plan.item, loc, message, name) for loc, message in problems)), None
        )
        if fix is None:
            plan.unresolved = [(format_path(loc), _advice(loc, message)) for loc, message in problems]
            return plan
        _apply(plan, *fix)
    else:
        plan.unresolved = [(format_path(loc), message) for loc, message in _validation_problems(plan.item)]
        return plan
    if not allow_unknown_region:
        _drop_unknown_regions(plan, known)
    if plan.changes:
        _normalise(plan)
    return plan


def _apply(plan: RepairPlan, loc: Loc, problem: str, value: Any) -> None:
    before = copy.deepcopy(get_path(plan.item, loc))
    if value is MISSING:
        del_path(plan.item, loc)
    else:
        set_path(plan.item, loc, value)
    plan.changes.append(Change(format_path(loc), problem, before, copy.deepcopy(value)))


def _protect_key(loc: Loc) -> None:
    if loc[0] == "endpoint_name":
        raise PathError(
            "endpoint_name is the table's key and cannot be changed: `delete --force` the record and "
            "deploy it again under the new name"
        )


def _validation_problems(item: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    try:
        Endpoint.model_validate(item)
    except ValidationError as exc:
        return [(_clean(error["loc"]), _message(error)) for error in exc.errors()]
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        return [((), str(exc) or type(exc).__name__)]
    return []


def _clean(loc: tuple[int | str, ...]) -> Loc:
    """A pydantic location without union tags; a map-key error (``[key]``) points at the entry."""
    return tuple(
        part for part in loc if not (isinstance(part, str) and (_is_type_tag(part) or part == "[key]"))
    )


def _safe_fix(item: Mapping[str, Any], loc: Loc, message: str, name: Any) -> tuple[Loc, str, Any] | None:
    """``(where, problem, new value or MISSING)`` for a problem with a safe fix, else None."""
    head = loc[:1]
    if len(loc) == 2 and loc[0] == "spec" and loc[1] in _DEFAULTED_SPEC_FIELDS:
        return loc, f"{message} (removed: GCO's default applies)", MISSING
    if loc[:3] == ("spec", "autoscaling", "metrics") and len(loc) >= 5 and loc[4] == "type":
        return loc[:4], f"{message} (dropped: GCO's monitor ignored it)", MISSING
    if loc[:3] == ("spec", "autoscaling", "metrics") and len(loc) >= 5 and loc[4] == "target":
        return loc, f"{message} (removed: default 70)", MISSING
    if head == ("ingress_path",) and isinstance(name, str):
        return loc[:1], message, f"/inference/{name}"
    if head == ("desired_state",):
        guess = difflib.get_close_matches(str(get_path(item, loc)), DESIRED_STATES, n=1, cutoff=0.6)
        return (loc[:1], f"{message} (closest state)", guess[0]) if guess else None
    if head == ("region_status",):
        where = loc[:2] if len(loc) >= 2 else loc[:1]
        value: Any = MISSING if len(where) == 2 else {}
        return where, f"{message} (the region's fleet writes it again)", value
    if head == ("created_at",):
        updated = item.get("updated_at")
        return loc[:1], message, updated if isinstance(updated, str) else iso_now()
    if head == ("created_by",):
        return loc[:1], message, MISSING
    return None


def _advice(loc: Loc, message: str) -> str:
    where = format_path(loc)
    if loc[:1] == ("endpoint_name",):
        return (
            f"{message} (the table's key cannot be changed: `delete --force` it and deploy it again "
            "under a valid name)"
        )
    if loc in (("spec",), ("spec", "image")):
        return (
            f"{message} (no safe default: pass --set spec.image=IMAGE; other spec fields take GCO's defaults)"
        )
    return f"{message} (no safe default: pass --set {where}=VALUE or --unset {where})"


def _drop_unknown_regions(plan: RepairPlan, known: Sequence[str]) -> None:
    regions = plan.item.get("target_regions")
    if not isinstance(regions, list):
        return
    for index in reversed(range(len(regions))):
        problem = region_problem(str(regions[index]), known)
        if problem is None:
            continue
        guess = closest_region(str(regions[index]), known)
        hint = f"; did you mean {guess!r}? (--set target_regions='[...]')" if guess else ""
        why = "not a known region (KNOWN_REGIONS): no fleet would ever report it, so the record could "
        _apply(plan, ("target_regions", index), why + f"never be purged{hint}", MISSING)


def _normalise(plan: RepairPlan) -> None:
    """Rewrite the touched top-level fields the way they will be written (the model's item form), so
    what is shown is what is written; the ``after`` of each change is read from there."""
    written = Endpoint.model_validate(plan.item).to_item()
    for key in plan.written_keys:
        if key in written:
            plan.item[key] = from_dynamo(written[key])
        else:
            plan.item.pop(key, None)
    plan.changes = [Change(c.path, c.problem, c.before, _written(plan.item, c)) for c in plan.changes]


def _written(item: Mapping[str, Any], change: Change) -> Any:
    """What ends up at a change's path: a removed list item stays removed (the next one moved up)."""
    loc = parse_path(change.path)
    if change.after is MISSING and isinstance(loc[-1], int):
        return MISSING
    return get_path(item, loc)


# --------------------------------------------------------------------------------------------------
# Showing values
# --------------------------------------------------------------------------------------------------


def shown(path: str, value: Any, limit: int = 60, absent: str = "(absent)") -> str:
    """A value as the repair table shows it: compact JSON, environment values as ``***``."""
    if value is MISSING:
        return absent
    loc = parse_path(path)
    if loc[:2] == ("spec", "env") and len(loc) > 2:
        value = REDACTED
    elif loc == ("spec", "env"):
        value = redact_env(value)
    elif loc == ("spec",):
        value = redact_spec(value)
    text = json.dumps(value, default=json_fallback, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."
