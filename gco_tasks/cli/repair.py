"""`gco-tasks endpoints repair NAME` and `delete --force`: the way out for a malformed record.

Where it stands in the flow: outside the fleet, before it. More in docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gco_tasks.adapters.store import EndpointNotFoundError, EndpointStore, later_than
from gco_tasks.cli.support import AllowUnknownRegionOption, fail, open_store, settings_or_fail
from gco_tasks.core.record_repair import PathError, RepairPlan, parse_value, plan_repair, shown
from gco_tasks.core.records import DELETED, RecordHeader
from gco_tasks.core.regions import known_regions, region_problem

console = Console(soft_wrap=False)


def repair_command(
    name: str = typer.Argument(..., metavar="NAME", help="Endpoint name."),
    set_values: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="PATH=VALUE",
        help="Write VALUE (JSON, or text) at PATH, e.g. --set spec.port=8000 --set spec.image=nginx:1.27 "
        "(repeatable).",
    ),
    unset: list[str] | None = typer.Option(
        None, "--unset", metavar="PATH", help="Remove the field at PATH (its default applies) (repeatable)."
    ),
    yes: bool = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation."),
    allow_unknown_region: bool = AllowUnknownRegionOption,
) -> None:
    """Show what is wrong with a record, field by field, and what will be written; then write it."""
    settings = settings_or_fail()
    sets = [_assignment(value) for value in set_values or []]
    with open_store(settings) as store:
        item = store.get_item(name)
        if item is None:
            fail(str(EndpointNotFoundError(name)))
        try:
            known = known_regions(settings.known_regions)
            plan = plan_repair(item, sets, unset or [], known, allow_unknown_region)
        except PathError as exc:
            fail(str(exc))
        if not plan.changes and not plan.unresolved:
            typer.echo(f"Endpoint {name} is valid: nothing to repair.")
            return
        _show(plan)
        if plan.unresolved:
            fail(f"{len(plan.unresolved)} field(s) have no safe default: add --set/--unset; nothing written")
        if not yes:
            typer.confirm(f"Write these changes to endpoint {name}?", abort=True)
        _write(store, name, item, plan)
    typer.echo(f"Endpoint {name} repaired ({', '.join(plan.written_keys)}); the fleet applies it next cycle.")


def _write(store: EndpointStore, name: str, item: dict[str, Any], plan: RepairPlan) -> None:
    """The changed top-level fields and a fresh ``updated_at``, if ``updated_at`` is still the one read."""
    fields = {key: plan.item[key] for key in plan.written_keys if key in plan.item}
    removed = [key for key in plan.written_keys if key not in plan.item]
    fields["updated_at"] = later_than(item.get("updated_at"))
    if not store.write_fields_if_unchanged(name, item, fields, removed):
        fail(f"endpoint {name!r} changed meanwhile (or was removed); nothing written: run repair again")


def force_delete(name: str) -> None:
    """Mark ``name`` deleted whatever its content, conditional on ``updated_at``; target regions that no
    fleet serves are dropped, or the record could never be purged."""
    settings = settings_or_fail()
    known = known_regions(settings.known_regions)
    with open_store(settings) as store:
        item = store.get_item(name)
        if item is None:
            fail(str(EndpointNotFoundError(name)))
        fields: dict[str, Any] = {"desired_state": DELETED, "updated_at": later_than(item.get("updated_at"))}
        regions = item.get("target_regions")
        dropped: list[Any] = []
        if isinstance(regions, list):
            kept = [r for r in regions if isinstance(r, str) and region_problem(r, known) is None]
            dropped = [r for r in regions if r not in kept]
            if dropped:
                fields["target_regions"] = kept
        if RecordHeader.from_item(item).desired_state == DELETED and not dropped:
            return
        if not store.write_fields_if_unchanged(name, item, fields):
            fail(f"endpoint {name!r} changed meanwhile (or was removed); check `status {name}` and retry")
    if dropped:
        typer.echo(
            f"Dropped target regions that are not in KNOWN_REGIONS (no fleet would report them deleted, so "
            f"the record could never be purged): {', '.join(map(str, dropped))}."
        )


def _assignment(text: str) -> tuple[str, Any]:
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise typer.BadParameter(f"expected PATH=VALUE, got {text!r}", param_hint="--set")
    return path.strip(), parse_value(value)


def _show(plan: RepairPlan) -> None:
    table = Table("FIELD", "PROBLEM", "NOW", "WILL WRITE", title="Repair", title_justify="left")
    for change in plan.changes:
        cells = (
            change.path,
            change.problem,
            shown(change.path, change.before),
            shown(change.path, change.after, absent="(removed)"),
        )
        table.add_row(*map(Text, cells))
    for path, problem in plan.unresolved:
        table.add_row(Text(path), Text(problem), Text(""), Text("?", style="red"))
    console.print(table)
