"""`gco-tasks diff NAME --region R`: what the next reconcile of NAME would change in a region (a unified
diff, computed by the API server); `diff --all --region R`: a line per endpoint of the region, or JSON.

Where it stands in the flow: beside the fleet, never in it (the runbook's first step before a cut-over from
GCO's monitor, or before any change). More in docs/architecture.md.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import yaml

from gco_tasks.core.adoption import handover_removals, has_legacy_owner, unowned_paths, without_fields
from gco_tasks.core.config import ConfigError, Settings, load_settings
from gco_tasks.core.errors import GcoError
from gco_tasks.core.ownership import is_ours
from gco_tasks.core.records import Endpoint
from gco_tasks.core.redaction import REDACTED
from gco_tasks.core.rendering import RenderOptions, desired_objects, object_key
from gco_tasks.flows.observe import candidate_keys

if TYPE_CHECKING:
    from gco_tasks.adapters.cluster import ClusterGateway

Obj = dict[str, Any]
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2


class RecordMissing(GcoError):
    """The record is not in the table."""


@dataclass(frozen=True)
class Change:
    """One object's change: ``create``, ``update`` or ``delete``, with its before and after (``None``
    where absent), both already cleaned for display."""

    verb: str
    key: tuple[str, str]
    before: Obj | None
    after: Obj | None

    @property
    def rolls_pods(self) -> bool:
        """A Deployment whose pod template changes (every pod restarts)."""
        if self.key[0] != "Deployment" or self.verb != "update" or not self.before or not self.after:
            return False
        return bool(self.before["spec"].get("template") != self.after["spec"].get("template"))


class DiffOutput(StrEnum):
    text = "text"
    json = "json"


def diff_command(
    name: str | None = typer.Argument(None, help="Endpoint name (or --all)."),
    region: str = typer.Option(None, "--region", "-r", help="Region to compare (default: $REGION)."),
    every: bool = typer.Option(
        False, "--all", help="Every endpoint targeting the region: one summary line each."
    ),
    output: DiffOutput = typer.Option(
        DiffOutput.text,
        "-o",
        "--output",
        help="text (a unified diff; with --all a line per endpoint) or json.",
    ),
) -> None:
    """Show what the next reconcile of NAME (or, with --all, of every endpoint of the region) would change
    in a region (server-side dry run). Exit 0: in sync; 1: there are differences; 2: trouble."""
    if (name is None) == (not every):
        _fail("name one endpoint, or pass --all for every endpoint of the region (not both)")
    settings = _settings()
    region = region or settings.region
    if every:
        try:
            reports = compute_region(settings, region)
        except GcoError as exc:  # the table or the cluster cannot be read at all
            _fail(str(exc))
    else:
        assert name is not None
        try:
            reports = [EndpointDiff(name, compute_changes(settings, name, region))]
        except GcoError as exc:  # a missing or invalid record, an unreachable table or cluster
            if output is DiffOutput.text:
                _fail(str(exc))
            reports = [EndpointDiff(name, [], str(exc))]
    if output is DiffOutput.json:
        typer.echo(json.dumps([report.as_json() for report in reports], indent=2))
    elif every:
        typer.echo(format_summary(reports), nl=False)
    else:
        typer.echo(format_changes(reports[0].changes), nl=False)
    raise typer.Exit(exit_code(reports))


@dataclass(frozen=True)
class EndpointDiff:
    """One endpoint's changes in the region, or why they could not be computed."""

    name: str
    changes: list[Change]
    error: str | None = None

    @property
    def summary(self) -> str:
        """``in sync``, ``would change``, ``pods restart`` (a Deployment's pods roll), ``would delete``
        (only deletions) or ``error``."""
        if self.error is not None:
            return "error"
        if not self.changes:
            return "in sync"
        if all(change.verb == "delete" for change in self.changes):
            return "would delete"
        return "pods restart" if any(change.rolls_pods for change in self.changes) else "would change"

    def as_json(self) -> dict[str, Any]:
        changes = [
            {"verb": c.verb, "kind": c.key[0], "name": c.key[1], "pods_restart": c.rolls_pods}
            for c in self.changes
        ]
        data: dict[str, Any] = {"endpoint": self.name, "summary": self.summary, "changes": changes}
        return data | ({"error": self.error} if self.error is not None else {})


def exit_code(reports: list[EndpointDiff]) -> int:
    """diff(1)'s: 2 when one could not be computed, else 1 when one would change, else 0."""
    if any(report.error is not None for report in reports):
        return EXIT_TROUBLE
    return EXIT_DIFFERENT if any(report.changes for report in reports) else EXIT_SAME


def format_summary(reports: list[EndpointDiff]) -> str:
    """One line per endpoint: its name, the summary and what changes (``update Deployment/x``, ...)."""
    if not reports:
        return "# no endpoint targets this region\n"
    width = max(len(report.name) for report in reports)
    lines = []
    for report in reports:
        detail = report.error or ", ".join(f"{c.verb} {c.key[0]}/{c.key[1]}" for c in report.changes)
        lines.append(f"{report.name.ljust(width)}   {report.summary}" + (f": {detail}" if detail else ""))
    return "\n".join(lines) + "\n"


def compute_region(settings: Settings, region: str) -> list[EndpointDiff]:
    """Every endpoint targeting ``region``, by name: its changes, or the reason it could not be
    computed (an invalid record, an object the API server refuses)."""
    from gco_tasks.adapters.cluster import ClusterGateway, load_api_client
    from gco_tasks.adapters.store import EndpointStore

    items = sorted(
        EndpointStore.from_settings(settings).scan_items(region), key=lambda i: str(i.get("endpoint_name"))
    )
    gateway = ClusterGateway(load_api_client(), settings.inference_namespace, settings.k8s_api_timeout)
    reports = []
    for item in items:
        name = str(item.get("endpoint_name"))
        try:
            reports.append(EndpointDiff(name, _changes(settings, gateway, item, name, region)))
        except GcoError as exc:
            reports.append(EndpointDiff(name, [], str(exc)))
    return reports


def compute_changes(settings: Settings, name: str, region: str) -> list[Change]:
    """Every object of ``name`` in ``region`` that the next reconcile would create, change or delete."""
    from gco_tasks.adapters.cluster import ClusterGateway, load_api_client
    from gco_tasks.adapters.store import EndpointStore

    item = EndpointStore.from_settings(settings).get_item(name)
    if item is None:
        table = settings.inference_endpoints_table_name
        raise RecordMissing(f"endpoint {name!r} not found in table {table!r}")
    gateway = ClusterGateway(load_api_client(), settings.inference_namespace, settings.k8s_api_timeout)
    return _changes(settings, gateway, item, name, region)


def _changes(
    settings: Settings, gateway: ClusterGateway, item: Mapping[str, Any], name: str, region: str
) -> list[Change]:
    desired = desired_objects(Endpoint.from_item(item), region, RenderOptions.from_settings(settings))
    live: dict[tuple[str, str], Obj] = {}
    for kind, object_name in candidate_keys(name):
        found = gateway.get_object(kind, object_name)
        if found is not None and is_ours(found, name):
            live[(kind, object_name)] = found
    changes = [_change(gateway, obj, live.get(object_key(obj))) for obj in desired]
    wanted = {object_key(obj) for obj in desired}
    changes += [
        Change("delete", key, clean(obj), None)
        for key, obj in live.items()
        if key not in wanted and not (obj.get("metadata") or {}).get("deletionTimestamp")  # going already
    ]
    return [change for change in changes if change.before != change.after]


def _change(gateway: ClusterGateway, desired: Obj, live: Obj | None) -> Change:
    key = object_key(desired)
    after = gateway.apply(copy.deepcopy(desired), dry_run=True)
    if live is None:
        return Change("create", key, None, clean(after))
    if has_legacy_owner(live):
        removed = handover_removals(after, keep_unowned=unowned_paths(desired))
        if removed:
            trimmed = without_fields(after, removed)
            trimmed["metadata"].pop("managedFields", None)
            after = gateway.replace_dry_run(trimmed)
    return Change("update", key, clean(live), clean(after))


# --------------------------------------------------------------------------- display (pure)


def clean(obj: Mapping[str, Any]) -> Obj:
    """``obj`` as the diff compares it: bookkeeping left out, kind filled in (env values still there:
    ``redacted`` hides them for display)."""
    shown: Obj = copy.deepcopy(dict(obj))
    shown.pop("status", None)
    metadata = shown.setdefault("metadata", {})
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    for key in CONTROLLER_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        metadata.pop("annotations", None)
    return shown


def redacted(before: Obj | None, after: Obj | None) -> tuple[Obj | None, Obj | None]:
    """Both sides with every env value shown as ``***``, and as ``*** (changed)`` on the new side where
    the value differs from the old one: a change shows, a value never does (not even as a hash, which a
    short value would give away)."""
    old: dict[tuple[str, str], Any] = {}
    before, after = copy.deepcopy(before), copy.deepcopy(after)
    _walk_env(before, lambda slot, var: old.setdefault(slot, var.get("value")))

    def hide(slot: tuple[str, str], var: dict[str, Any]) -> None:
        changed = slot in old and old[slot] != var.get("value")
        var["value"] = f"{REDACTED} (changed)" if changed else REDACTED

    _walk_env(after, hide)
    _walk_env(before, hide)  # every old value equals itself: ``***``
    return before, after


def _walk_env(node: Any, visit: Callable[[tuple[str, str], dict[str, Any]], object], where: str = "") -> None:
    """Call ``visit((container path, var name), var)`` on each env var holding a literal value
    (``valueFrom`` names a Secret, not its content)."""
    if isinstance(node, dict):
        here = f"{where}/{node.get('name', '')}"
        env = node.get("env")
        for var in env if isinstance(env, list) else []:
            if isinstance(var, dict) and "value" in var:
                visit((here, str(var.get("name"))), var)
        for key, value in node.items():
            if key != "env":
                _walk_env(value, visit, f"{here}.{key}")
    elif isinstance(node, list):
        for value in node:
            _walk_env(value, visit, where)


def format_changes(changes: list[Change]) -> str:
    """A unified diff per object (YAML, keys sorted), each headed by what happens to it."""
    if not changes:
        return "# no difference: the next reconcile changes nothing\n"
    parts = []
    for change in changes:
        kind, name = change.key
        note = "  (pod template changes: its pods restart)" if change.rolls_pods else ""
        parts.append(f"# {change.verb} {kind}/{name}{note}\n")
        shown_before, shown_after = redacted(change.before, change.after)
        before = _yaml(shown_before).splitlines(keepends=True)
        after = _yaml(shown_after).splitlines(keepends=True)
        label = f"{kind}/{name}"
        parts.extend(difflib.unified_diff(before, after, f"live {label}", f"next reconcile {label}"))
    return "".join(parts)


def _yaml(obj: Obj | None) -> str:
    return "" if obj is None else yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=1000)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(EXIT_TROUBLE)
