"""`gco-tasks endpoints status NAME`: what each region's fleet last reported for an endpoint, and the last
Kubernetes Events of its Deployment where the region's cluster can be reached.

Where it stands in the flow: at the very end, reading. More in docs/architecture.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import typer
import urllib3
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli.status_view import PENDING, RegionEvents, StatusView, age_text, build_view, event_lines
from gco_tasks.cli.support import fail, open_store, settings_or_fail
from gco_tasks.core.config import Settings
from gco_tasks.core.fields import json_fallback, parse_timestamp
from gco_tasks.core.records import RecordHeader
from gco_tasks.core.regions import kubeconfig_variable

EVENTS_TIMEOUT_SECONDS = 5
console = Console(soft_wrap=False)


class Output(StrEnum):
    table = "table"
    json = "json"


def status_command(
    name: str = typer.Argument(..., metavar="NAME", help="Endpoint name."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, or json for scripts."),
    as_json: bool = typer.Option(False, "--json", help="Same as --output json."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C (or --timeout)."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between refreshes."),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help="Stop watching after SECONDS."),
    until: str | None = typer.Option(
        None,
        "--until",
        metavar="STATE",
        help="Watch until every target region reports STATE (e.g. running); exit 1 if not by --timeout.",
    ),
    events: bool = typer.Option(
        True,
        "--events/--no-events",
        help="Read the Deployment's Kubernetes Events where a kubeconfig is set.",
    ),
) -> None:
    """Show one endpoint and, per region: state, message, last report, rollout (ready/updated/desired)
    and the last Kubernetes Events. Env values are shown as ***."""
    settings = settings_or_fail()
    as_json = as_json or output is Output.json
    with open_store(settings) as store:
        if not (watch or until):
            _show_once(store, settings, name, as_json, events)
            return
        _watch(store, settings, name, as_json, events, interval, timeout, until)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_view(store: EndpointStore, settings: Settings, name: str, with_events: bool) -> StatusView | None:
    """The view of ``name`` now; None when there is no such record."""
    item = store.get_item(name)
    if item is None:
        return None
    found = read_events(item, settings, os.environ) if with_events else {}
    return build_view(item, datetime.now(UTC), settings.status_heartbeat_seconds, found)


def read_events(
    item: Mapping[str, Any], settings: Settings, environ: Mapping[str, str]
) -> dict[str, RegionEvents]:
    """Per region of the record, its Deployment's Events, or a note saying why there are none."""
    header = RecordHeader.from_item(item)
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    regions = dict.fromkeys([*header.target_regions, *header.region_status])
    return {
        region: region_events(header.endpoint_name, namespace or settings.inference_namespace, region,
                              kubeconfig_for(region, settings, environ))
        for region in regions
    }  # fmt: skip


def kubeconfig_for(region: str, settings: Settings, environ: Mapping[str, str]) -> str | None:
    """``KUBECONFIG_<REGION>``, else ``KUBECONFIG`` when ``REGION`` names this region, else None."""
    own = environ.get(kubeconfig_variable(region))
    if own:
        return own
    if settings.region_is_explicit and settings.region == region and environ.get("KUBECONFIG"):
        return environ["KUBECONFIG"]
    return None


def region_events(name: str, namespace: str, region: str, kubeconfig: str | None) -> RegionEvents:
    """The last Events about Deployment ``name``; never raises (a note says what went wrong)."""
    if kubeconfig is None:
        variable = kubeconfig_variable(region)
        return RegionEvents(note=f"no kubeconfig for {region} (set {variable}, or KUBECONFIG with REGION)")
    try:
        items = _list_events(name, namespace, kubeconfig)
    except Exception as exc:  # a region we cannot read must not hide the others
        if getattr(exc, "status", None) == 404:
            return RegionEvents(note=f"the API server of {region} serves no events.k8s.io/v1 Events (404)")
        return RegionEvents(note=f"Events of {region} not readable: {_reason(exc)}")
    mine = [item for item in items if _regards(item, name)]
    return RegionEvents(event_lines(mine), "" if mine else f"no Events about Deployment {name}")


def _list_events(name: str, namespace: str, kubeconfig: str) -> list[dict[str, Any]]:
    """The namespace's Events about Deployment ``name``: selected by the API server, or, where it does
    not take that field selector (400: the stand-in), all of them, filtered by the caller."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    api_client.configuration.retries = 0  # one try, bounded by the timeout: a note, not a wait
    with api_client:
        api = client.EventsV1Api(api_client)
        selector = f"regarding.kind=Deployment,regarding.name={name}"
        try:
            return _event_items(api, namespace, selector)
        except ApiException as exc:
            if exc.status != 400:
                raise
            return _event_items(api, namespace, None)


def _event_items(api: Any, namespace: str, selector: str | None) -> list[dict[str, Any]]:
    extra = {"field_selector": selector} if selector else {}
    response = api.list_namespaced_event(
        namespace, limit=500, _request_timeout=EVENTS_TIMEOUT_SECONDS, _preload_content=False, **extra
    )
    body: dict[str, Any] = json.loads(response.data or b"{}")
    return list(body.get("items") or [])


def _regards(item: Mapping[str, Any], name: str) -> bool:
    regarding = item.get("regarding") or item.get("involvedObject") or {}
    return isinstance(regarding, Mapping) and regarding.get("name") == name


def _reason(exc: Exception) -> str:
    """One short clause: the API's status, or why its server could not be reached."""
    status = getattr(exc, "status", None)
    if status:
        return f"{status} {getattr(exc, 'reason', '')}".strip()
    cause = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the connection error
    text = str(cause if isinstance(cause, Exception) else exc).strip()
    detail = text.splitlines()[0].rsplit(": ", 1)[-1] if text else type(exc).__name__
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return f"cannot reach its API server ({detail})"
    return f"{type(exc).__name__}: {detail}"


# --------------------------------------------------------------------------------------------------
# Showing
# --------------------------------------------------------------------------------------------------


def _show_once(store: EndpointStore, settings: Settings, name: str, as_json: bool, events: bool) -> None:
    view = read_view(store, settings, name, events)
    if view is None:
        fail(f"endpoint {name!r} not found")
    if as_json:
        typer.echo(json.dumps(view.to_json(), indent=2, default=json_fallback))
        return
    console.print(render(view))
    if view.problems:
        fail(f"endpoint {name!r} is malformed: `gco-tasks endpoints repair {name}` shows and fixes it")


def render(view: StatusView) -> RenderableType:
    """The view as a terminal shows it: the record's summary, one row per region, then Events."""
    parts: list[RenderableType] = [Text(f"Endpoint: {view.name}", style="bold")]
    lines = {"Desired state": view.desired_state, **view.summary}
    parts += [Text(f"  {key + ':':<15}{value}") for key, value in lines.items()]
    parts += [Text(f"  problem: {problem}", style="red") for problem in view.problems]
    parts.append(Text(""))
    if view.regions:
        parts.append(region_table(view))
    if all(region.state == PENDING for region in view.regions):
        parts.append(Text("(Waiting for the fleet to sync)"))
    parts += _events(view)
    return Group(*parts)


def region_table(view: StatusView) -> Table:
    table = Table("REGION", "STATE", "READY", "UPDATED", "DESIRED", "LAST SYNC", "MESSAGE")
    for region in view.regions:
        synced = age_text(region.age_seconds) + (" (stale)" if region.stale else "")
        name = region.region if region.targeted else f"{region.region} (not targeted)"
        updated = "-" if region.updated is None else str(region.updated)
        cells = (name, region.state, str(region.ready), updated, str(region.desired), synced, region.message)
        table.add_row(*map(Text, cells))
    return table


def _events(view: StatusView) -> list[RenderableType]:
    parts: list[RenderableType] = []
    now = datetime.now(UTC)
    for region in view.regions:
        if not region.events and not region.events_note:
            continue
        parts.append(Text(f"Events in {region.region}:", style="bold"))
        if region.events_note:
            parts.append(Text(f"  {region.events_note}"))
        for event in region.events:
            when = _event_age(event.at, now)
            count = f" (x{event.count})" if event.count > 1 else ""
            parts.append(Text(f"  {when:>8}  {event.type:<8} {event.reason:<20} {event.note}{count}"))
    return parts


def _event_age(stamp: str | None, now: datetime) -> str:
    when = parse_timestamp(stamp)
    return age_text((now - when).total_seconds() if when else None)


# --------------------------------------------------------------------------------------------------
# Watching
# --------------------------------------------------------------------------------------------------


def _watch(
    store: EndpointStore,
    settings: Settings,
    name: str,
    as_json: bool,
    events: bool,
    interval: float,
    timeout: float | None,
    until: str | None,
) -> None:
    """Refresh until Ctrl-C, the deadline, or ``until`` reached; a terminal gets a screen redrawn in place."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    screen = (
        Live(Text(""), console=console, auto_refresh=False) if not as_json and sys.stdout.isatty() else None
    )
    shown: tuple[object, ...] | None = None
    try:
        with screen if screen is not None else nullcontext():
            while True:
                view = read_view(store, settings, name, events)
                shown = _refresh(view, name, as_json, screen, shown)
                if _done(view, until):
                    return
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return _timed_out(until, timeout)
                time.sleep(interval if left is None else min(interval, left))
    except KeyboardInterrupt:
        return


def _refresh(
    view: StatusView | None, name: str, as_json: bool, screen: Live | None, shown: tuple[object, ...] | None
) -> tuple[object, ...]:
    """Print the view if it changed (a Live screen is redrawn each time, for its ages)."""
    report = view.report() if view is not None else ("missing",)
    if screen is not None:
        screen.update(render(view) if view else Text(f"endpoint {name!r} not found"), refresh=True)
        return report
    if report == shown:
        return report
    if as_json:
        typer.echo(
            json.dumps(
                view.to_json() if view else {"endpoint_name": name, "found": False}, default=json_fallback
            )
        )
    else:
        console.print(Text(f"--- {datetime.now(UTC).strftime('%H:%M:%S')}", style="dim"))
        console.print(
            render(view) if view else Text(f"endpoint {name!r} not found (purged, or not created yet)")
        )
    sys.stdout.flush()
    return report


def _done(view: StatusView | None, until: str | None) -> bool:
    if until is None:
        return False
    if view is None:
        return until in ("deleted", "purged")
    return view.settled_in(until)


def _timed_out(until: str | None, timeout: float | None) -> None:
    if until is not None:
        fail(f"not every target region reports {until!r} after {timeout:g}s")
