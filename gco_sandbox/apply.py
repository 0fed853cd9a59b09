"""Field ownership and server-side apply for the sandbox API server: ``managedFields`` as Kubernetes
keeps them (FieldsV1 sets of ``f:``/``k:`` paths per manager and operation). Pure; no I/O.

Where it stands in the flow: step 5 of ``reconcile_endpoint`` writes with server-side apply (field
manager ``gco-tasks``, force). The sandbox API server (a LOCAL STAND-IN, not Kubernetes) answers those
applies with this module, so that what the fleet relies on holds here as it does upstream:

- an apply creates the object when absent and merges into it otherwise (keyed lists item by item);
- fields this manager applied before and no longer sends are removed, unless another manager owns them;
- a field another manager owns with a different value is a conflict (409) unless ``force``, which moves
  the field to the applier;
- any other write (create, replace, patch, the ``scale`` subresource) makes its manager the owner of the
  fields it changed, taking them from everyone else: that is how ``spec.replicas`` written by an HPA
  survives a later apply that omits it.

Simplifications: lists with a known merge key (``patching.merge_key``) are associative, every other list
is atomic; keys hold the one merge-key field. Maps are granular except the ones Kubernetes marks atomic
that the fleet's objects use (``nodeSelector``, and ``selector``: a Deployment's LabelSelector and a
Service's selector map): an apply replaces those whole and owns them whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from gco_sandbox.patching import JSON, deep_copy, merge_key

Path = tuple[str, ...]

#: Never owned by anyone: set by the server, or identify the object rather than describe it.
_SERVER_FIELDS = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
}


#: Maps and structs Kubernetes declares atomic (``+mapType=atomic`` / ``+structType=atomic``), by name.
ATOMIC = frozenset({"nodeSelector", "selector"})


class ApplyConflict(Exception):
    """Fields the applier sends with a different value are owned by other managers (409 Conflict)."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        self.conflicts = conflicts
        parts = [f'conflict with "{manager}": {render_path(path)}' for manager, path in conflicts]
        super().__init__(f"Apply failed with {len(conflicts)} conflict(s): {'; '.join(parts)}")


@dataclass(frozen=True)
class ManagedEntry:
    """One ``metadata.managedFields`` entry, with its field set parsed."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    fields: frozenset[Path]
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def render(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


# --- field sets -------------------------------------------------------------------------------------


def _item_key(item: JSON, key: str) -> str:
    return "k:" + json.dumps({key: item.get(key)}, separators=(",", ":"), sort_keys=True)


def field_set(obj: JSON, scope: str = "main") -> frozenset[Path]:
    """The paths ``obj`` sets: leaves (scalars, atomic lists, empty maps) and keyed list items.
    ``scope`` "main" leaves out ``status``; "status" keeps only ``status``."""
    out: set[Path] = set()
    if not isinstance(obj, dict):
        return frozenset()
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or (key == "status") != (scope == "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _SERVER_FIELDS}
            if not value:
                continue
        _collect(value, (f"f:{key}",), (key,), out)
    return frozenset(out)


def _collect(value: JSON, path: Path, names: tuple[str, ...], out: set[Path]) -> None:
    if isinstance(value, dict) and value and names[-1] not in ATOMIC:
        for key, item in value.items():
            _collect(item, (*path, f"f:{key}"), (*names, key), out)
        return
    key = merge_key(names)
    if isinstance(value, list) and value and key and all(isinstance(i, dict) and key in i for i in value):
        for item in value:
            item_path = (*path, _item_key(item, key))
            out.add(item_path)
            for field, sub in item.items():
                _collect(sub, (*item_path, f"f:{field}"), (*names, field), out)
        return
    out.add(path)


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Render a set of paths as Kubernetes' FieldsV1 tree (``"."`` marks a node owned in itself)."""
    root: dict[str, Any] = {}
    ends: list[dict[str, Any]] = []
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
        ends.append(node)
    for node in ends:
        if node and "." not in node:
            node["."] = {}
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> frozenset[Path]:
    out: set[Path] = set()
    for part, sub in tree.items():
        if part == ".":
            out.add(prefix)
            continue
        path = (*prefix, part)
        if not sub:
            out.add(path)
        else:
            out |= from_fields_v1(sub, path)
    return frozenset(out)


def render_path(path: Path) -> str:
    return ".".join(part[2:] if part.startswith("f:") else f"[{part[2:]}]" for part in path)


# --- walking objects by path ------------------------------------------------------------------------

_MISSING = object()


def _step(node: JSON, part: str) -> JSON:
    if part.startswith("f:"):
        return node.get(part[2:], _MISSING) if isinstance(node, dict) else _MISSING
    if isinstance(node, list):
        wanted = json.loads(part[2:])
        for item in node:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return item
    return _MISSING


def value_at(obj: JSON, path: Path) -> JSON:
    node = obj
    for part in path:
        node = _step(node, part)
        if node is _MISSING:
            return _MISSING
    return node


def remove_path(obj: JSON, path: Path) -> None:
    """Remove the field or list item at ``path`` in place (no-op when absent), then drop maps and lists
    that became empty below the top-level fields."""
    parent = value_at(obj, path[:-1])
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        item = _step(parent, last)
        if item is not _MISSING:
            parent.remove(item)
    else:
        return
    if len(path) > 2 and parent in ({}, []):
        remove_path(obj, path[:-1])


# --- apply and update -------------------------------------------------------------------------------


def structured_merge(live: JSON, config: JSON, names: tuple[str, ...] = ()) -> JSON:
    """Merge an applied configuration into the live object: maps field by field, keyed lists item by
    item (live items the config lacks stay, for the ownership pass to judge), everything else replaced."""
    if isinstance(config, dict) and not (names and names[-1] in ATOMIC):
        out = dict(live) if isinstance(live, dict) else {}
        for key, value in config.items():
            if value is not None:
                out[key] = structured_merge(out.get(key), value, (*names, key))
        return out
    key = merge_key(names)
    if isinstance(config, list) and isinstance(live, list) and key:
        by_key = {item.get(key): item for item in live if isinstance(item, dict)}
        merged = [structured_merge(by_key.get(item.get(key)), item, names) for item in config]
        sent = {item.get(key) for item in config}
        return merged + [item for item in live if not isinstance(item, dict) or item.get(key) not in sent]
    return deep_copy(config)


def _prefixes(paths: Iterable[Path]) -> set[Path]:
    return {path[:i] for path in paths for i in range(1, len(path) + 1)}


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    entries: list[ManagedEntry],
    *,
    manager: str,
    force: bool,
    api_version: str,
    now: str,
) -> tuple[dict[str, Any], list[ManagedEntry]]:
    """Server-side apply of ``config`` by ``manager``; returns the new object and managedFields entries.
    Raises ``ApplyConflict`` when, without ``force``, another manager owns a field being changed."""
    applied = field_set(config)
    mine = (manager, "Apply", "")
    previous = next((e.fields for e in entries if e.identity == mine), frozenset())
    others = [e for e in entries if e.identity != mine]
    conflicts = _conflicts(live or {}, config, applied, others)
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    taken = {path for _, path in conflicts}
    others = [replace(e, fields=e.fields - taken) for e in others]
    merged = structured_merge(deep_copy(live) if live else {}, config)
    kept = applied.union(*(e.fields for e in others))
    kept_prefixes = _prefixes(kept)
    for path in sorted(previous - kept, key=len):  # items before their fields: fields hold their keys
        if path not in kept_prefixes:
            remove_path(merged, path)
    own = ManagedEntry(manager, "Apply", api_version, now, applied)
    return merged, _tidy([*others, own])


def _conflicts(
    live: dict[str, Any], config: dict[str, Any], applied: frozenset[Path], others: list[ManagedEntry]
) -> list[tuple[str, Path]]:
    conflicts = []
    for entry in others:
        for path in sorted(applied & entry.fields):
            live_value = value_at(live, path)
            if (
                path[-1].startswith("f:")
                and live_value is not _MISSING
                and live_value != value_at(config, path)
            ):
                conflicts.append((entry.manager, path))
    return conflicts


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    entries: list[ManagedEntry],
    *,
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> list[ManagedEntry]:
    """Ownership after a non-apply write: ``manager`` owns what it changed; removed fields leave
    everyone's sets."""
    scope = "status" if subresource == "status" else "main"
    old_set = field_set(old, scope) if old else frozenset()
    new_set = field_set(new, scope)
    changed = frozenset(p for p in new_set if p not in old_set or value_at(old, p) != value_at(new, p))
    lost = changed | (old_set - new_set)
    if not lost:
        return entries
    mine = (manager, "Update", subresource)
    previous = next((e.fields for e in entries if e.identity == mine), frozenset())
    others = [replace(e, fields=e.fields - lost) for e in entries if e.identity != mine]
    own = ManagedEntry(manager, "Update", api_version, now, (previous - lost) | changed, subresource)
    return _tidy([*others, own])


def written_entries(given: Any, entries: list[ManagedEntry]) -> list[ManagedEntry] | None:
    """The entries a non-apply write sets itself in ``metadata.managedFields`` (as kube-apiserver takes
    them: csaupgrade's hand-over of ownership is such a write), or None when it left them as they were
    (or sent none): then the write's own changes decide ownership (``record_update``)."""
    if not isinstance(given, list) or given == [entry.render() for entry in entries]:
        return None
    return _tidy([_parsed_entry(entry) for entry in given if isinstance(entry, dict)])


def _parsed_entry(entry: dict[str, Any]) -> ManagedEntry:
    return ManagedEntry(
        manager=str(entry.get("manager") or ""),
        operation=str(entry.get("operation") or "Update"),
        api_version=str(entry.get("apiVersion") or ""),
        time=str(entry.get("time") or ""),
        fields=from_fields_v1(entry.get("fieldsV1") or {}),
        subresource=str(entry.get("subresource") or ""),
    )


def _tidy(entries: list[ManagedEntry]) -> list[ManagedEntry]:
    return [entry for entry in entries if entry.fields]
