"""`gco-tasks diff NAME --region R`: what the next reconcile of NAME would change in a region, computed
by the API server, as a unified diff.

Where it stands in the flow: beside the fleet, never in it (the runbook's first step before a cut-over
from GCO's monitor, or before any change). It reads the record from the table, renders it as a worker
would (``reconciler.desired_objects``), reads the endpoint's live objects by name from the cluster that
``KUBECONFIG`` (or the in-cluster configuration) names, and asks the API server what each apply would
store: a server-side apply with ``dryRun=All`` (defaulting, admission and validation included, nothing
stored). For an object GCO's monitor still co-owns, the reconcile first hands its fields over and the
apply then removes what only GCO set (``cutover``); the diff shows that too: those fields are taken out
of the dry-run result (``cutover.handover_removals``) and the result is defaulted by a dry-run
``replace``. Objects to create and to delete are listed; a Deployment whose pod template would change is
marked, since its pods restart. The Ingress is shown as the record wants it: the watchdog's withholding
(in Redis) is not consulted.

Bookkeeping is left out of both sides (``managedFields``, ``resourceVersion``, ``generation``, ``uid``,
timestamps, ``status``, the Deployment controller's revision annotation), and env var values are
redacted (shown as a short hash, so a changed value still shows). Exit codes, as diff(1): 0 no
difference, 1 differences, 2 trouble (usage, a record that is missing or invalid, an unreachable table
or cluster).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import yaml

from gco_tasks.config import ConfigError, Settings, load_settings
from gco_tasks.cutover import handover_removals, has_legacy_owner, unowned_paths, without_fields
from gco_tasks.endpoints import Endpoint
from gco_tasks.errors import GcoError
from gco_tasks.manifests import RenderOptions, object_key
from gco_tasks.observe import candidate_keys, is_ours
from gco_tasks.reconciler import desired_objects

if TYPE_CHECKING:
    from gco_tasks.cluster import ClusterGateway

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


def diff_command(
    name: str = typer.Argument(..., help="Endpoint name."),
    region: str = typer.Option(None, "--region", "-r", help="Region to compare (default: $REGION)."),
) -> None:
    """Show what the next reconcile of NAME would change in a region (server-side dry run). Exit 0: in
    sync; 1: there are differences; 2: trouble."""
    settings = _settings()
    region = region or settings.region
    try:
        changes = compute_changes(settings, name, region)
    except GcoError as exc:  # a missing or invalid record, an unreachable table or cluster
        _fail(str(exc))
    typer.echo(format_changes(changes), nl=False)
    raise typer.Exit(EXIT_DIFFERENT if changes else EXIT_SAME)


def compute_changes(settings: Settings, name: str, region: str) -> list[Change]:
    """Every object of ``name`` in ``region`` that the next reconcile would create, change or delete."""
    from gco_tasks.cluster import ClusterGateway, load_api_client
    from gco_tasks.store import EndpointStore

    item = EndpointStore.from_settings(settings).get_item(name)
    if item is None:
        table = settings.inference_endpoints_table_name
        raise RecordMissing(f"endpoint {name!r} not found in table {table!r}")
    desired = desired_objects(Endpoint.from_item(item), region, RenderOptions.from_settings(settings))
    gateway = ClusterGateway(load_api_client(), settings.inference_namespace, settings.k8s_api_timeout)
    live: dict[tuple[str, str], Obj] = {}
    for kind, object_name in candidate_keys(name):
        found = gateway.get(kind, object_name)
        if found is not None and is_ours(found, name):
            live[(kind, object_name)] = found
    changes = [_change(gateway, obj, live.get(object_key(obj))) for obj in desired]
    wanted = {object_key(obj) for obj in desired}
    changes += [Change("delete", key, clean(obj), None) for key, obj in live.items() if key not in wanted]
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
    """``obj`` as the diff shows it: bookkeeping left out, env values redacted, kind filled in."""
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
    _redact_env(shown)
    return shown


def _redact_env(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                for var in value:
                    if isinstance(var, dict) and isinstance(var.get("value"), str):
                        var["value"] = redacted(var["value"])
            else:
                _redact_env(value)
    elif isinstance(node, list):
        for value in node:
            _redact_env(value)


def redacted(value: str) -> str:
    """An env value as the diff shows it: never the value, but a change still shows."""
    return f"<redacted sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"


def format_changes(changes: list[Change]) -> str:
    """A unified diff per object (YAML, keys sorted), each headed by what happens to it."""
    if not changes:
        return "# no difference: the next reconcile changes nothing\n"
    parts = []
    for change in changes:
        kind, name = change.key
        note = "  (pod template changes: its pods restart)" if change.rolls_pods else ""
        parts.append(f"# {change.verb} {kind}/{name}{note}\n")
        before = _yaml(change.before).splitlines(keepends=True)
        after = _yaml(change.after).splitlines(keepends=True)
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
