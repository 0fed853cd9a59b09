"""Paths on the shared load balancer: a younger record cannot equal or shadow an older one's.

Where it stands in the flow: the fan-out (from its Scan) and the reconciler's consistent-read path both
call ``shadowed_paths``; a record it names is refused with an ``error`` status naming the other endpoint,
and nothing of it is applied or deleted. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gco_tasks.core.conventions import public_path
from gco_tasks.core.fields import parse_timestamp

_YOUNGEST = datetime.max.replace(tzinfo=UTC)


def segments(path: str) -> tuple[str, ...]:
    """A URL path as its segments: ``/inference/a/`` -> ``("inference", "a")``; ``/`` -> ``()``."""
    return tuple(part for part in path.split("/") if part)


def collide(first: str, second: str) -> bool:
    """Equal, or one a segment-wise prefix of the other."""
    a, b = segments(first), segments(second)
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def record_path(item: Mapping[str, Any]) -> str | None:
    """The path a record asks for (GCO's default ``/inference/{name}`` when it gives none); None when it
    holds no path (no string name, deleted, or a path that is not a string)."""
    name, path = item.get("endpoint_name"), item.get("ingress_path")
    if not isinstance(name, str) or not name or item.get("desired_state") == "deleted":
        return None
    if path is None or path == "":
        return public_path(name)
    return path if isinstance(path, str) else None


def _seniority(item: Mapping[str, Any]) -> tuple[datetime, str]:
    return (parse_timestamp(item.get("created_at")) or _YOUNGEST, str(item["endpoint_name"]))


class _Node:
    __slots__ = ("below", "children", "owner")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.owner: str | None = None  # the record whose path ends here
        self.below: str | None = None  # a record whose path ends here or deeper


def shadowed_paths(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Record name -> the older record whose path its own path equals or shadows (or lies under), for
    the records of one load balancer (one region). Linear in the total number of path segments."""
    candidates = [(item, path) for item in records if (path := record_path(item)) is not None]
    candidates.sort(key=lambda pair: _seniority(pair[0]))
    root, shadowed = _Node(), {}
    for item, path in candidates:
        name = str(item["endpoint_name"])
        other = _collision(root, segments(path))
        if other is not None:
            shadowed[name] = other
        else:
            _insert(root, segments(path), name)
    return shadowed


def _collision(root: _Node, parts: tuple[str, ...]) -> str | None:
    node = root
    for part in parts:
        if node.owner is not None:
            return node.owner  # a kept path is a prefix of this one
        child = node.children.get(part)
        if child is None:
            return None
        node = child
    return node.owner or node.below  # equal, or this path is a prefix of a kept one


def _insert(root: _Node, parts: tuple[str, ...], name: str) -> None:
    node = root
    node.below = node.below or name
    for part in parts:
        node = node.children.setdefault(part, _Node())
        node.below = node.below or name
    node.owner = name


_SHADOWING_MARK = "created earlier, on the region's shared load balancer"


def shadowing_message(path: str | None, other: str) -> str:
    """The error a shadowed record reports."""
    return (
        f"ingress_path: {path!r} equals or overlaps (by path segments) the path of endpoint {other!r}, "
        f"{_SHADOWING_MARK}: choose an ingress_path that neither equals nor lies under or above another "
        "endpoint's"
    )


def ingress_paths(ingress: Mapping[str, Any]) -> set[str]:
    """Every path a live Ingress routes."""
    spec = ingress.get("spec") or {}
    return {
        str(path.get("path"))
        for rule in spec.get("rules") or []
        for path in ((rule or {}).get("http") or {}).get("paths") or []
        if isinstance(path, Mapping) and path.get("path")
    }


def already_serves_its_path(
    item: Mapping[str, Any], region: str, own_ingress: Mapping[str, Any] | None
) -> bool:
    """Whether the record's own live Ingress already routes the path the record asks for, and the
    region's last report is not a refusal of that path: an earlier reconcile found the path free, and a
    record created since is younger, so it cannot take the path away. A reconcile without the fan-out's
    verdict then needs no Scan of the table (the fan-out's own Scan looks again every cycle)."""
    path = record_path(item)
    if path is None or own_ingress is None or path not in ingress_paths(own_ingress):
        return False
    report = ((item.get("region_status") or {}).get(region)) or {}
    error = report.get("error") if isinstance(report, Mapping) else None
    return not (isinstance(error, str) and _SHADOWING_MARK in error)
