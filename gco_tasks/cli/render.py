"""`gco-tasks render NAME --region R [--file RECORD.json] [-o yaml|json]`: the operator's dry run.

Where it stands in the flow: beside the fleet, never in it. More in docs/architecture.md.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml

from gco_tasks.cli.support import AllowUnknownRegionOption, check_regions
from gco_tasks.core.config import ConfigError, Settings, load_settings
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.redaction import redact_objects
from gco_tasks.core.rendering import RenderOptions, render_endpoint


class OutputFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def render_command(
    name: str = typer.Argument(..., help="Endpoint name."),
    region: str | None = typer.Option(
        None, "--region", "-r", help="Region to render for (default: $REGION)."
    ),
    file: Path | None = typer.Option(
        None,
        "--file",
        "-f",
        help="Read the record from this JSON file (an item in the table's shape, or `aws dynamodb "
        "get-item` output) instead of the table.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
    output: OutputFormat = typer.Option(
        OutputFormat.yaml, "--output", "-o", help="yaml (a stream) or json (a List)."
    ),
    show_secrets: bool = typer.Option(
        False, "--show-secrets", help="Show environment values as they are (default: shown as ***)."
    ),
    allow_unknown_region: bool = AllowUnknownRegionOption,
) -> None:
    """Print the Kubernetes objects the fleet would apply for NAME in a region, touching nothing.
    Environment values are shown as *** unless --show-secrets is given."""
    settings = _settings()
    target = _region(region, settings)
    check_regions([target], allow_unknown_region, settings)
    item = _read_file(file, name) if file is not None else _read_table(settings, name)
    try:
        endpoint = Endpoint.from_item(item)
        objects = render_endpoint(endpoint, target, RenderOptions.from_settings(settings))
    except InvalidEndpointError as exc:
        _fail(str(exc))
    if not objects:
        typer.echo(_why_empty(endpoint, target), err=True)
    shown = objects if show_secrets else redact_objects(objects)
    typer.echo(format_objects(shown, output.value), nl=False)


def _region(given: str | None, settings: Settings) -> str:
    if given:
        return given
    if settings.region_is_explicit:
        return settings.region
    _fail("render needs a region: pass --region R (e.g. --region us-east-1) or set REGION")


def format_objects(objects: list[dict[str, Any]], output: str) -> str:
    """A YAML stream (``---`` between documents) or a JSON ``List``; keys in rendering order."""
    if output == "json":
        document = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects}
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=1000)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc))


def _read_file(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")
    item = _plain_item(data)
    if item is None:
        _fail(f"{path} does not hold one endpoint record (a JSON object)")
    found = item.setdefault("endpoint_name", name)
    if found != name:
        _fail(f"{path} holds the record of {found!r}, not {name!r}")
    return item


def _plain_item(data: Any) -> dict[str, Any] | None:
    """The item as boto3's resource API gives it; `aws dynamodb get-item` output (``{"Item": {...}}`` in
    DynamoDB's typed JSON) is converted."""
    if not isinstance(data, dict):
        return None
    if set(data) == {"Item"} and isinstance(data["Item"], dict):
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        try:
            return {key: deserializer.deserialize(value) for key, value in data["Item"].items()}
        except (TypeError, ValueError, AttributeError) as exc:
            _fail(f"not DynamoDB JSON: {exc}")
    return data


def _read_table(settings: Settings, name: str) -> dict[str, Any]:
    from gco_tasks.adapters.store import EndpointStore, StoreError

    try:
        item = EndpointStore.from_settings(settings).get_item(name)
    except StoreError as exc:
        _fail(str(exc))
    if item is None:
        _fail(f"endpoint {name!r} not found in table {settings.inference_endpoints_table_name!r}")
    return item


def _why_empty(endpoint: Endpoint, region: str) -> str:
    if endpoint.desired_state == "deleted":
        return f"# endpoint {endpoint.endpoint_name!r} is deleted: no objects in any region"
    regions = ", ".join(endpoint.target_regions) or "none"
    return f"# endpoint {endpoint.endpoint_name!r} does not target {region} (targets: {regions}): no objects"


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)
