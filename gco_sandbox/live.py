"""What ``gco-tasks sandbox`` shows while it runs: endpoints by region, from the table.

Where it stands in the flow: at the very end, reading what the fleet reported. Each second the sandbox
scans the DynamoDB table and turns the items into rows (``status_rows``: endpoint and target region with the
region's ``region_status``); a terminal gets a ``rich`` table redrawn in place, anything else (CI, a pipe)
gets one line per change of a row (``changed_lines``), ignoring heartbeat-only rewrites of ``last_sync``.
Everything here but ``render_table`` is plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from rich.table import Table

from gco_tasks.core.fields import parse_timestamp

PENDING = "pending"


class Row(NamedTuple):
    endpoint: str
    region: str
    desired: str
    state: str
    ready: int
    replicas: int
    last_sync: str | None
    error: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.endpoint, self.region)

    def report(self) -> tuple[str, str, int, int, str]:
        """What a change line is about: everything but ``last_sync``."""
        return (self.desired, self.state, self.ready, self.replicas, self.error)


def status_rows(items: Iterable[Mapping[str, Any]], regions: Sequence[str]) -> list[Row]:
    """One row per (endpoint, sandbox region it targets), sorted; ``pending`` before the first report.
    Tolerates malformed items (shown, not crashed on: bad input is data)."""
    rows = []
    for item in items:
        name = str(item.get("endpoint_name", "?"))
        targets = item.get("target_regions")
        statuses = item.get("region_status")
        statuses = statuses if isinstance(statuses, Mapping) else {}
        for region in regions:
            if not isinstance(targets, list | tuple) or region not in targets:
                continue
            rows.append(_row(name, region, str(item.get("desired_state", "?")), statuses.get(region)))
    return sorted(rows, key=lambda row: (row.endpoint, row.region))


def _row(name: str, region: str, desired: str, status: Any) -> Row:
    if not isinstance(status, Mapping):
        return Row(name, region, desired, PENDING, 0, 0, None, "")
    return Row(
        endpoint=name,
        region=region,
        desired=desired,
        state=str(status.get("state", "?")),
        ready=_int(status.get("replicas_ready")),
        replicas=_int(status.get("replicas_desired")),
        last_sync=str(status["last_sync"]) if status.get("last_sync") else None,
        error=str(status.get("error") or ""),
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def age(stamp: str | None, now: datetime) -> str:
    """``last_sync`` as an age (``3s ago``, ``2m ago``); ``-`` when absent or unreadable."""
    when = parse_timestamp(stamp)
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def changed_lines(previous: Mapping[tuple[str, str], Row], rows: Sequence[Row]) -> list[str]:
    """A line for each row that is new or reports something new, and for each row that went away."""
    lines = []
    current = {row.key: row for row in rows}
    for row in rows:
        before = previous.get(row.key)
        if before is None or before.report() != row.report():
            lines.append(describe(row))
    for key in previous.keys() - current.keys():
        lines.append(f"{key[0]} [{key[1]}]: gone from the table")
    return lines


def describe(row: Row) -> str:
    text = f"{row.endpoint} [{row.region}]: {row.state} {row.ready}/{row.replicas} (desired {row.desired})"
    return f"{text} error: {row.error}" if row.error else text


_STATE_STYLES = {"running": "green", "error": "red", "creating": "yellow", "updating": "yellow"}


def render_table(rows: Sequence[Row], now: datetime | None = None, note: str = "") -> Table:
    """The live table: one line per endpoint and region."""
    now = now or datetime.now(UTC)
    table = Table(title="gco-tasks sandbox: endpoints by region", caption=note or None, expand=False)
    for column in ("endpoint", "region", "desired", "state", "ready", "last sync", "error"):
        table.add_column(column, no_wrap=column != "error", overflow="fold")
    for row in rows:
        style = _STATE_STYLES.get(row.state, "")
        table.add_row(
            row.endpoint,
            row.region,
            row.desired,
            f"[{style}]{row.state}[/]" if style else row.state,
            f"{row.ready}/{row.replicas}",
            age(row.last_sync, now),
            row.error,
        )
    if not rows:
        table.add_row("(no endpoints yet)", "", "", "", "", "", "")
    return table
