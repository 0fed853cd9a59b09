"""PATCH semantics for the sandbox API server: JSON merge patch (RFC 7386, by ``json-merge-patch``),
Kubernetes strategic merge patch and JSON patch (RFC 6902, by ``jsonpatch``). Pure functions of
(live object, patch); no I/O.

Where it stands in the flow: the fleet writes with server-side apply (see ``apply.py``), but people and
other controllers patch too (``kubectl scale``, an HPA, tests), so the sandbox API server (a LOCAL
STAND-IN, not Kubernetes) supports every patch type the official client sends. Strategic merge uses
Kubernetes' merge keys for the lists this project writes; every other list is replaced whole, as
Kubernetes does for atomic lists (``tolerations`` among them: it has no merge key upstream).
"""

from __future__ import annotations

from typing import Any

import json_merge_patch as merge_patch
import jsonpatch
import jsonpointer

JSON = Any

#: field name -> merge key of its list items (Kubernetes' ``patchMergeKey``), for lists we know.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
}


class PatchError(ValueError):
    """The patch cannot be applied; the API server answers 422 (or 400 for malformed patches)."""


def merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key of the list at ``path`` (field names only, no indices), or None for atomic lists."""
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        # Container ports are keyed by containerPort, Service ports by port.
        return "containerPort" if len(path) >= 2 and path[-2] in _CONTAINER_LISTS else "port"
    return _MERGE_KEYS.get(name)


_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def deep_copy(value: JSON) -> JSON:
    """A copy of JSON data; much faster than ``copy.deepcopy`` for dicts, lists and scalars."""
    if isinstance(value, dict):
        return {key: deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [deep_copy(item) for item in value]
    return value


# --- JSON merge patch -------------------------------------------------------------------------------


def json_merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386: maps merge, ``null`` deletes, anything else (lists included) replaces. The library
    merges in place, so it gets copies: neither argument changes."""
    return merge_patch.merge(deep_copy(target), deep_copy(patch))


# --- strategic merge patch --------------------------------------------------------------------------


def strategic_merge_patch(target: JSON, patch: JSON, path: tuple[str, ...] = ()) -> JSON:
    """Kubernetes' strategic merge: like a merge patch, but keyed lists merge item by item and the
    ``$patch: replace|delete`` directives are honoured; ``$setElementOrder`` and ``$retainKeys`` are
    accepted and ignored."""
    if not isinstance(patch, dict):
        return deep_copy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: deep_copy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, (*path, key))
        else:
            merged = strategic_merge_patch(result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list(live: JSON, patch: list[JSON], path: tuple[str, ...]) -> list[JSON]:
    key = merge_key(path)
    if key is None or not isinstance(live, list):
        return [deep_copy(item) for item in patch if not _is_directive(item)]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [deep_copy(item) for item in patch if not _is_directive(item)]
    merged = list(live)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"list item at {'.'.join(path)} has no merge key {key!r}")
        index = next(
            (i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append({k: deep_copy(v) for k, v in item.items() if k != "$patch"})
        else:
            merged[index] = strategic_merge_patch(merged[index], item, path)
    return merged


def _is_directive(item: JSON) -> bool:
    return isinstance(item, dict) and set(item) == {"$patch"}


# --- JSON patch -------------------------------------------------------------------------------------


def json_patch(target: JSON, operations: JSON) -> JSON:
    """RFC 6902 on a copy of ``target``: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, operations, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError) as exc:
        raise PatchError(f"JSON patch cannot be applied: {exc}") from exc
