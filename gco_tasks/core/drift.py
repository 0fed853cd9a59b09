"""Drift: does a live object still hold, field by field, every value we would apply?

Where it stands in the flow: between observe and plan. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from kubernetes.utils.quantity import parse_quantity

from gco_tasks.core.adoption import has_legacy_owner
from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.rendering import object_key

#: How many differing paths a digest carries (enough for a log line; the message stays small).
MAX_PATHS: Final = 5

#: Lists whose elements are merged by key (``patchMergeKey`` / ``listMapKeys``), by field name.
MERGE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
}
#: Ports: ``containerPort`` (containers) or ``port`` (Services), with the protocol, TCP by default.
PORT_KEYS: Final = ("containerPort", "port")
#: Maps and structs that apply owns whole (``mapType=atomic`` / ``structType=atomic``), by field name.
ATOMIC_MAPS: Final = frozenset({"nodeSelector", "selector", "matchLabels"})
#: Fields the API server fills in with a default when left out: the default written or left out is
#: one value.
DEFAULTS: Final[dict[str, Any]] = {"protocol": "TCP"}
#: Fields of an object that are not content (identity and bookkeeping).
SKIPPED: Final = frozenset({"apiVersion", "kind", "status"})
SKIPPED_METADATA: Final = frozenset({"name", "namespace"})

#: A path as a chain of (parent, step) pairs: O(1) to extend, joined only when a difference is shown.
Path = tuple[Any, str]


def differences(desired: Mapping[str, Any], live: Mapping[str, Any], limit: int | None = None) -> list[str]:
    """The paths (e.g. ``spec.template.spec.containers[inference].image``) of fields ``desired`` sets
    that ``live`` does not hold; ``[]`` when the live object is in sync. Stops after ``limit`` paths."""
    found: list[str] = []
    for key, value in desired.items():
        if key in SKIPPED:
            continue
        if key == "metadata":
            metadata = {k: v for k, v in (value or {}).items() if k not in SKIPPED_METADATA}
            _compare(metadata, live.get("metadata"), (None, "metadata"), found)
        else:
            _compare(value, live.get(key), (None, key), found)
        if limit is not None and len(found) >= limit:
            return found[:limit]
    return found


def in_sync(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    return not differences(desired, live, limit=1)


def digest(live: Mapping[str, Any], desired: Mapping[str, Any] | None) -> ObservedObject:
    """The digest of a live object (``plan.ObservedObject``) with what differs from ``desired`` (the
    object rendered under its kind and name; None when it is not wanted) and whether GCO's monitor still
    owns some of it."""
    observed = ObservedObject.from_object(live)
    drift = tuple(differences(desired, live, MAX_PATHS)) if desired is not None else ()
    return observed.model_copy(update={"drift": drift, "legacy": has_legacy_owner(live)})


def digests(live: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]) -> list[ObservedObject]:
    """``digest`` of every live object of one endpoint against the rendered objects."""
    wanted = {object_key(obj): obj for obj in desired}
    return [digest(obj, wanted.get(object_key(obj))) for obj in live]


# --------------------------------------------------------------------------- comparison


def _compare(desired: Any, live: Any, path: Path, found: list[str]) -> None:
    if _empty(desired):
        return  # rendering leaves empty fields out: not ours, whatever the live object has
    if type(desired) is dict:
        _compare_map(desired, live, path, found)
    elif type(desired) is list:
        _compare_list(desired, live, path, found)
    elif not _same_scalar(desired, live, path):
        found.append(_show(path))


def _compare_map(desired: dict[str, Any], live: Any, path: Path, found: list[str]) -> None:
    if type(live) is not dict:
        found.append(_show(path))
        return
    if path[1] in ATOMIC_MAPS:
        extra = [key for key, value in live.items() if key not in desired and not _empty(value)]
        if extra:
            found.append(_show(path))
            return
    for key, value in desired.items():
        _compare(value, live.get(key, DEFAULTS.get(key)), (path, key), found)


def _compare_list(desired: list[Any], live: Any, path: Path, found: list[str]) -> None:
    if type(live) is not list:
        found.append(_show(path))
        return
    parent, field = path
    key_of = _merge_key(field)
    if key_of is None:
        if len(desired) != len(live):
            found.append(_show(path))
            return
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            _compare(want, have, (parent, f"{field}[{index}]"), found)
        return
    by_key = {key_of(item): item for item in live if type(item) is dict}
    for want in desired:
        key = key_of(want)
        element = (parent, f"{field}[{_show_key(key)}]")
        if key not in by_key:
            found.append(_show(element))
        else:
            _compare(want, by_key[key], element, found)


def _merge_key(field: str) -> Callable[[Mapping[str, Any]], tuple[str, ...]] | None:
    if field == "ports":
        return _port_key
    fields = MERGE_KEYS.get(field)
    if fields is None:
        return None
    return lambda item: tuple(str(item.get(name)) for name in fields)


def _port_key(item: Mapping[str, Any]) -> tuple[str, ...]:
    number = next((item[name] for name in PORT_KEYS if name in item), None)
    return (str(number), str(item.get("protocol") or "TCP"))


def _same_scalar(desired: Any, live: Any, path: Path) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if _is_quantity(path):
        wanted = _quantity(desired)
        return wanted is not None and wanted == _quantity(live)
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, int | str) and isinstance(live, int | str):
        return str(desired) == str(live)  # an int-or-string field written either way
    return False


def _is_quantity(path: Path) -> bool:
    """A quantity: a value in a container's ``resources.requests`` or ``resources.limits``."""
    side = path[0]
    return (
        side is not None
        and side[1] in ("requests", "limits")
        and side[0] is not None
        and (side[0][1] == "resources")
    )


def _quantity(value: Any) -> Decimal | None:
    try:
        parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, ArithmeticError):
        return None
    return parsed


def _empty(value: Any) -> bool:
    return value is None or (type(value) in (str, dict, list) and not value)


def _show(path: Path) -> str:
    steps: list[str] = []
    node: Any = path
    while node is not None:
        node, step = node
        steps.append(step)
    return ".".join(reversed(steps))


def _show_key(key: tuple[str, ...]) -> str:
    return "/".join(part for part in key if part != "TCP") if len(key) > 1 else key[0]
