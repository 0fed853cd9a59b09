"""Adopting objects GCO's monitor created: its field ownership handed to the fleet's apply manager, as
client-go's ``csaupgrade`` does for ``kubectl apply --server-side``.

Where it stands in the flow: inside step 5 (apply) of ``reconciler``, before the first server-side apply of
an object GCO's ``inference-monitor`` made, and in ``gco-tasks diff``. More in docs/architecture.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from gco_tasks.core import conventions as names

#: The field manager of the Python client's ``create``/``patch`` calls (kube-apiserver takes it from the
#: client's User-Agent, ``OpenAPI-Generator/<version>/python``), which GCO's monitor used.
LEGACY_FIELD_MANAGERS: Final = ("OpenAPI-Generator",)
#: The label every object of GCO's monitor carried, as a FieldsV1 path.
GCO_MARK: Final = ("f:metadata", "f:labels", f"f:{names.TYPE_LABEL}")
#: ``spec.replicas`` as a FieldsV1 path.
REPLICAS_PATH: Final = ("f:spec", "f:replicas")

FieldSet = dict[str, Any]
ManagedFields = list[dict[str, Any]]


def is_legacy_entry(entry: Mapping[str, Any], legacy_managers: Iterable[str] = LEGACY_FIELD_MANAGERS) -> bool:
    """An ``Update`` of the object itself (not a subresource) by a legacy manager, owning GCO's label."""
    return (
        entry.get("manager") in set(legacy_managers)
        and entry.get("operation") == "Update"
        and not entry.get("subresource")
        and has_path(entry.get("fieldsV1") or {}, GCO_MARK)
    )


def has_legacy_owner(obj: Mapping[str, Any], legacy_managers: Iterable[str] = LEGACY_FIELD_MANAGERS) -> bool:
    """Whether a live object still has fields owned by GCO's monitor (it needs the hand-over)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    managers = tuple(legacy_managers)
    return any(is_legacy_entry(entry, managers) for entry in entries)


def upgrade_managed_fields(
    entries: Sequence[Mapping[str, Any]],
    manager: str = names.FIELD_MANAGER,
    legacy_managers: Iterable[str] = LEGACY_FIELD_MANAGERS,
    keep_unowned: Iterable[tuple[str, ...]] = (),
) -> ManagedFields | None:
    """``entries`` with every legacy ``Update`` entry folded into ``manager``'s ``Apply`` entry (created
    from the newest legacy entry when there is none), less the ``keep_unowned`` paths; None when there is
    no legacy entry (nothing to do)."""
    managers = tuple(legacy_managers)
    legacy = [entry for entry in entries if is_legacy_entry(entry, managers)]
    if not legacy:
        return None
    kept = [copy.deepcopy(dict(entry)) for entry in entries if not is_legacy_entry(entry, managers)]
    ours = next((entry for entry in kept if _is_apply_entry(entry, manager)), None)
    if ours is None:
        newest = max(legacy, key=lambda entry: str(entry.get("time") or ""))
        ours = {**copy.deepcopy(dict(newest)), "manager": manager, "operation": "Apply"}
        ours["fieldsV1"] = {}
        kept.append(ours)
    for entry in legacy:
        if entry.get("apiVersion") == ours.get("apiVersion"):
            ours["fieldsV1"] = union(ours.get("fieldsV1") or {}, entry.get("fieldsV1") or {})
    for path in keep_unowned:
        ours["fieldsV1"] = without_path(ours["fieldsV1"], path)
    return kept


def migration_patch(
    obj: Mapping[str, Any],
    manager: str = names.FIELD_MANAGER,
    legacy_managers: Iterable[str] = LEGACY_FIELD_MANAGERS,
    keep_unowned: Iterable[tuple[str, ...]] = (),
) -> list[dict[str, Any]] | None:
    """The JSON patch that hands ``obj``'s legacy ownership to ``manager``: replace
    ``/metadata/managedFields``, and ``/metadata/resourceVersion`` with the one read (the optimistic
    lock: a concurrent write makes it fail with 409). None when there is nothing to hand over."""
    metadata = obj.get("metadata") or {}
    upgraded = upgrade_managed_fields(
        metadata.get("managedFields") or [], manager, legacy_managers, keep_unowned
    )
    if upgraded is None:
        return None
    return [
        {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
        {"op": "replace", "path": "/metadata/resourceVersion", "value": metadata.get("resourceVersion")},
    ]


def unowned_paths(desired: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """What the hand-over must leave unowned for ``desired``: ``spec.replicas`` of a Deployment we render
    without replicas (the HPA owns them)."""
    if desired.get("kind") == "Deployment" and "replicas" not in (desired.get("spec") or {}):
        return [REPLICAS_PATH]
    return []


# --------------------------------------------------------------------------- FieldsV1 sets


def _is_apply_entry(entry: Mapping[str, Any], manager: str) -> bool:
    return (
        entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource")
    )


def union(left: Mapping[str, Any], right: Mapping[str, Any]) -> FieldSet:
    """The union of two FieldsV1 sets."""
    merged: FieldSet = copy.deepcopy(dict(left))
    for key, value in right.items():
        merged[key] = union(merged.get(key) or {}, value or {}) if key in merged else copy.deepcopy(value)
    return merged


def has_path(fields: Mapping[str, Any], path: Sequence[str]) -> bool:
    node: Any = fields
    for step in path:
        if not isinstance(node, Mapping) or step not in node:
            return False
        node = node[step]
    return True


def without_path(fields: Mapping[str, Any], path: Sequence[str]) -> FieldSet:
    """``fields`` less ``path`` (and less any parent left empty by that)."""
    result: FieldSet = copy.deepcopy(dict(fields))
    if not path:
        return result
    head, rest = path[0], path[1:]
    if head not in result:
        return result
    if not rest:
        del result[head]
        return result
    child = without_path(result[head] or {}, rest)
    if child:
        result[head] = child
    else:
        del result[head]
    return result


# --------------------------------------------------------------------------- what a hand-over removes


FieldPath = tuple[str, ...]


def member_paths(fields: Mapping[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    """The members of a FieldsV1 set: every field, list item or map a manager owns, as a path of
    ``f:``/``k:``/``v:``/``i:`` steps (a node owned in itself carries ``.``; a leaf is an empty node)."""
    members: set[FieldPath] = set()
    for step, child in fields.items():
        if step == ".":
            continue
        path = (*prefix, step)
        if not child or "." in child:
            members.add(path)
        members |= member_paths(child or {}, path)
    return members


def handover_removals(
    obj: Mapping[str, Any],
    legacy_managers: Iterable[str] = LEGACY_FIELD_MANAGERS,
    keep_unowned: Iterable[tuple[str, ...]] = (),
) -> list[FieldPath]:
    """What the first apply after the hand-over removes from ``obj`` (an object as an apply of ours left
    it, legacy entries still there): the members only GCO's monitor owned, less ``keep_unowned``. That
    is what server-side apply removes once those members are ours and our configuration does not set
    them: ``gco-tasks diff`` shows it before the cut-over. Shallowest first: a removed list item takes
    its fields with it (they could not be found by its key afterwards)."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    managers = tuple(legacy_managers)
    legacy: set[FieldPath] = set()
    kept: set[FieldPath] = set()
    for entry in entries:
        members = member_paths(entry.get("fieldsV1") or {})
        if is_legacy_entry(entry, managers):
            legacy |= members
        else:
            kept |= members
    kept_prefixes = {path[:i] for path in kept for i in range(1, len(path) + 1)}
    unowned = {tuple(path) for path in keep_unowned}
    removed = [
        path for path in legacy if path not in kept_prefixes and not any(path[: len(u)] == u for u in unowned)
    ]
    return sorted(removed, key=lambda path: (len(path), path))


def without_fields(obj: Mapping[str, Any], paths: Iterable[FieldPath]) -> dict[str, Any]:
    """A copy of ``obj`` less the members at ``paths`` (absent ones are ignored)."""
    result: dict[str, Any] = copy.deepcopy(dict(obj))
    for path in paths:
        _remove(result, path)
    return result


def _remove(node: Any, path: FieldPath) -> None:
    parent = node
    for step in path[:-1]:
        parent = _child(parent, step)
        if parent is None:
            return
    last = path[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        item = _child(parent, last)
        if item is not None:
            parent.remove(item)


def _child(node: Any, step: str) -> Any:
    if isinstance(node, dict) and step.startswith("f:"):
        return node.get(step[2:])
    if not isinstance(node, list):
        return None
    kind, _, text = step.partition(":")
    if kind == "i":
        index = int(text)
        return node[index] if 0 <= index < len(node) else None
    wanted = json.loads(text)
    for item in node:
        if kind == "v" and item == wanted:
            return item
        if kind == "k" and isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
            return item
    return None
