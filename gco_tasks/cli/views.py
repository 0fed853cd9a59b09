"""What `gco-tasks endpoints list` prints: table items in, rows of what each region reports out.

Where it stands in the flow: outside the fleet, at the operator's terminal; the verbs live in
``cli.endpoints``. Each record becomes a ``StatusView`` (``cli.status_view``: states, ages, stale
flags); this module picks the rows and columns and lays them out. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from gco_tasks.cli.status_view import PENDING, RegionView, StatusView, age_text, build_view

#: The region states a fleet reports, ``pending`` (no report yet) and ``invalid`` (the record fails
#: validation): what ``--state`` takes.
STATES: Final = (
    PENDING, "creating", "updating", "running", "stopped", "deleting", "deleted", "error", "invalid"
)  # fmt: skip
INVALID: Final = "invalid"
GAP: Final = "   "


def list_views(
    items: Iterable[Mapping[str, Any]],
    now: datetime,
    heartbeat_seconds: int,
    region: str | None = None,
    state: str | None = None,
) -> list[StatusView]:
    """The records as status views, newest first; with ``state``, only those whose ``region`` (or, without
    one, any target region) reports it (``invalid``: the records that fail validation)."""
    ordered = sorted(items, key=lambda item: str(item.get("created_at", "")), reverse=True)
    views = [build_view(item, now, heartbeat_seconds) for item in ordered]
    if state is None:
        return views
    return [view for view in views if _has_state(view, region, state)]


def _has_state(view: StatusView, region: str | None, state: str) -> bool:
    if state == INVALID:
        return bool(view.problems)
    return any(r.state == state for r in _shown(view, region))


def _shown(view: StatusView, region: str | None) -> list[RegionView]:
    if region is None:
        return [r for r in view.regions if r.targeted]
    return [r for r in view.regions if r.region == region]


def list_json(views: Sequence[StatusView], region: str | None) -> list[dict[str, Any]]:
    """Each record as stored (env values as ``***``) plus ``regions``: each target region's view, or only
    ``region``'s."""
    out = []
    for view in views:
        data = view.to_json()
        if region is not None:
            data["regions"] = [r for r in data["regions"] if r["region"] == region]
        out.append(data)
    return out


def list_rows(views: Sequence[StatusView], region: str | None, wide: bool) -> list[list[str]]:
    """Header and rows. With ``region``: its state, ready/desired, last report (and ``(stale)``) and
    message. Without: one column per region any record targets (state and ready/desired). ``wide`` adds
    the image, replicas, creation time (and, with a region, the updated count and the record's state)."""
    if region is not None:
        header = ["NAME", "STATE", "READY", "LAST SYNC"]
        header += ["UPDATED", "DESIRED STATE", "IMAGE", "REPLICAS", "CREATED"] if wide else []
        rows = [[*header, "MESSAGE"]]
        for view in views:
            found = _shown(view, region)
            shown = found[0] if found else None
            row = [view.name, _state(view, shown), _ready(shown), _synced(shown)]
            if wide:
                updated = "-" if shown is None or shown.updated is None else str(shown.updated)
                row += [updated, view.desired_state, *_spec(view)]
            rows.append([*row, _message(view, shown)])
        return rows
    regions = sorted({r.region for view in views for r in view.regions if r.targeted})
    header = ["NAME", "DESIRED STATE", *(name.upper() for name in regions)]
    rows = [header + (["IMAGE", "REPLICAS", "CREATED"] if wide else [])]
    for view in views:
        by_region = {r.region: r for r in view.regions if r.targeted}
        cells = [_cell(view, by_region.get(name)) for name in regions]
        rows.append([view.name, view.desired_state, *cells, *(_spec(view) if wide else [])])
    return rows


def _state(view: StatusView, region: RegionView | None) -> str:
    if view.problems:
        return INVALID
    return region.state if region else "-"


def _ready(region: RegionView | None) -> str:
    return f"{region.ready}/{region.desired}" if region else "-"


def _synced(region: RegionView | None) -> str:
    if region is None:
        return "-"
    return age_text(region.age_seconds) + (" (stale)" if region.stale else "")


def _message(view: StatusView, region: RegionView | None) -> str:
    if view.problems:
        return f"invalid record: {view.problems[0]}" + (
            f" (and {len(view.problems) - 1} more)" if len(view.problems) > 1 else ""
        )
    return " ".join((region.message if region else "").split())


def _cell(view: StatusView, region: RegionView | None) -> str:
    if region is None:
        return "-"
    text = f"{INVALID if view.problems else region.state} {_ready(region)}"
    return text + (" (stale)" if region.stale else "")


def _spec(view: StatusView) -> list[str]:
    spec = view.item.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    created = view.item.get("created_at")
    return [str(spec.get("image") or "-"), str(spec.get("replicas", "-")), str(created or "-")]


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as kubectl prints them: left-aligned columns, each as wide as its widest cell, nothing cut
    short (on a terminal or in a pipe); the last column unpadded."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append(GAP.join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
