"""`gco-tasks endpoints ...`: edit and inspect the desired state in DynamoDB, like GCO's `gco inference`.

Where it stands in the flow: outside the fleet, before it. Every write is conditional; one that loses to
the fleet's own writes is re-read and re-applied (``cli.conflicts``). More in docs/architecture.md.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn

import typer
import yaml

from gco_tasks.adapters.store import EndpointExistsError, EndpointStore
from gco_tasks.cli.admission import admit
from gco_tasks.cli.conflicts import STATE_ATTEMPTS, spec_overlap, state_conflict_message, state_decision
from gco_tasks.cli.nudge import RegionUrlsError, nudge, outcome, parse_region_urls, region_client, request
from gco_tasks.cli.repair import force_delete, repair_command
from gco_tasks.cli.status import status_command
from gco_tasks.cli.support import (
    AllowUnknownRegionOption,
    check_regions,
    complete_region,
    open_store,
    settings_or_fail,
)
from gco_tasks.cli.views import STATES, columns, list_json, list_rows, list_views
from gco_tasks.core.config import ConfigError, load_settings
from gco_tasks.core.fields import json_fallback, validate_endpoint_name
from gco_tasks.core.records import (
    DEFAULT_NAMESPACE,
    DELETED,
    DEPLOYING,
    STOPPED,
    DesiredState,
    Endpoint,
    EndpointSpec,
    InvalidEndpointError,
    RecordHeader,
    parse_spec,
)

endpoints_app = typer.Typer(
    help="Manage inference endpoints in the DynamoDB table (as GCO's `gco inference`).",
    no_args_is_help=True,
)

JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")
YesOption = typer.Option(False, "-y", "--yes", help="Do not ask for confirmation.")


# --------------------------------------------------------------------------------------------------
# Plumbing: the store, errors → exit codes, K=V parsing
# --------------------------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def _store() -> Iterator[EndpointStore]:
    """The store from the environment; every failure the user can act on becomes exit code 1."""
    with open_store() as store:
        yield store


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``K=V`` flags as a dict; a value without ``=`` is a usage error (GCO silently dropped it)."""
    result: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        result[key] = item
    return result


def _metric(value: str) -> dict[str, Any]:
    """``TYPE[:TARGET]`` (e.g. ``cpu:70``) as an autoscaling metric map."""
    kind, sep, target = value.partition(":")
    if not sep:
        return {"type": kind}
    if not target.strip().isdigit():
        raise typer.BadParameter(f"expected TYPE[:TARGET] with an integer target, got {value!r}")
    return {"type": kind, "target": int(target)}


def _checked_name(name: str) -> str:
    try:
        return validate_endpoint_name(name)
    except ValueError as exc:
        _fail(f"invalid endpoint name {name!r}: endpoint_name {exc}")


# --------------------------------------------------------------------------------------------------
# Pure: build a spec map from deploy's flags
# --------------------------------------------------------------------------------------------------


def build_spec(options: dict[str, Any]) -> EndpointSpec:
    """The spec for ``deploy``: only flags that were given, so GCO's defaults apply to the rest and the
    item carries no keys GCO would not write. Raises ``InvalidEndpointError`` naming each bad field."""
    spec: dict[str, Any] = {k: v for k, v in options.items() if v not in (None, {}, [])}
    scaling = {
        key: spec.pop(flag)
        for flag, key in (("min_replicas", "min_replicas"), ("max_replicas", "max_replicas"))
        if flag in spec
    }
    metrics = spec.pop("autoscale_metrics", None)
    if scaling or metrics:
        spec["autoscaling"] = {"enabled": True, **scaling, **({"metrics": metrics} if metrics else {})}
    extra_args = spec.pop("extra_args", None)
    if extra_args:
        try:
            spec["args"] = shlex.split(extra_args)
        except ValueError as exc:
            raise InvalidEndpointError(
                [("spec.args", f"--extra-args is not valid shell words: {exc}")]
            ) from None
    return parse_spec(spec)


# --------------------------------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------------------------------


@endpoints_app.command("create-table")
def create_table() -> None:
    """Create the table with GCO's schema (PK endpoint_name, on-demand), for local use."""
    with _store() as store:
        created = store.create_table()
    state = "created" if created else "already exists"
    typer.echo(f"Table {store.table_name} {state}.")


@endpoints_app.command()
def deploy(
    name: str = typer.Argument(..., help="Endpoint name (DNS-1035 label, at most 53 characters)."),
    image: str = typer.Option(..., "-i", "--image", help="Container image."),
    regions: list[str] = typer.Option(..., "-r", "--region", help="Target region (repeatable)."),
    replicas: int | None = typer.Option(None, "--replicas", help="Replicas per region (default 1)."),
    gpu_count: int | None = typer.Option(None, "--gpu-count", help="GPUs per replica (default 1)."),
    accelerator: str | None = typer.Option(None, "--accelerator", help="nvidia (default) or neuron."),
    port: int | None = typer.Option(None, "--port", help="Container port (default 8000)."),
    health_check_path: str | None = typer.Option(None, "--health-check-path", help="Default /health."),
    env: list[str] | None = typer.Option(None, "-e", "--env", help="Environment variable K=V (repeatable)."),
    node_selector: list[str] | None = typer.Option(None, "--node-selector", help="Node selector K=V."),
    capacity_type: str | None = typer.Option(None, "--capacity-type", help="on-demand or spot."),
    model_source: str | None = typer.Option(None, "--model-source", help="s3://bucket/key or HF id."),
    model_path: str | None = typer.Option(None, "--model-path", help="Model path on the shared volume."),
    extra_args: str | None = typer.Option(None, "--extra-args", help='Container args, e.g. "--x 1".'),
    namespace: str = typer.Option(DEFAULT_NAMESPACE, "--namespace", help="Kubernetes namespace."),
    min_replicas: int | None = typer.Option(None, "--min-replicas", help="Autoscaling minimum."),
    max_replicas: int | None = typer.Option(None, "--max-replicas", help="Autoscaling maximum."),
    autoscale_metric: list[str] | None = typer.Option(
        None, "--autoscale-metric", help="Autoscaling metric TYPE[:TARGET], e.g. cpu:70 (repeatable)."
    ),
    label: list[str] | None = typer.Option(None, "-l", "--label", help="Record label K=V (repeatable)."),
    run_as_non_root: bool = typer.Option(
        False, "--run-as-non-root", help="The image runs as a non-root user: pods get runAsNonRoot."
    ),
    run_as_user: int | None = typer.Option(
        None, "--run-as-user", help="Uid to run as (with --run-as-non-root), when the image's is not numeric."
    ),
    allow_unknown_region: bool = AllowUnknownRegionOption,
) -> None:
    """Create an endpoint: write its desired state; each target region's fleet deploys it."""
    checked = _checked_name(name)
    check_regions(regions, allow_unknown_region)
    options = {
        "image": image,
        "replicas": replicas,
        "gpu_count": gpu_count,
        "accelerator": accelerator,
        "port": port,
        "health_check_path": health_check_path,
        "env": _pairs(env, "--env"),
        "node_selector": _pairs(node_selector, "--node-selector"),
        "capacity_type": capacity_type,
        "model_source": model_source,
        "model_path": model_path,
        "extra_args": extra_args,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "autoscale_metrics": [_metric(m) for m in autoscale_metric or []],
        "run_as_non_root": run_as_non_root or None,
        "run_as_user": run_as_user,
    }
    labels = _pairs(label, "--label")
    with _store() as store:
        spec = admit(build_spec(options), checked)
        endpoint = Endpoint.new(checked, spec, regions, namespace=namespace, labels=labels)
        try:
            store.create(endpoint)
        except EndpointExistsError as exc:
            _fail(f"{exc}; use update-image/scale to change it, or delete it first")
    typer.echo(f"Endpoint {checked} created (deploying to {', '.join(regions)}).")
    _nudge(checked, regions)


@endpoints_app.command()
def scale(
    name: str = typer.Argument(...),
    replicas: int = typer.Option(..., "--replicas", help="Replicas per region."),
) -> None:
    """Set the replica count (keeps the desired state)."""
    with _store() as store:
        change = _guarded(name, lambda spec: admit(spec.with_changes(replicas=replicas), name, spec))
        endpoint = store.update_spec(name, change, desired_state=None)
    typer.echo(f"Endpoint {name} scaled to {endpoint.spec.replicas} replicas.")
    _nudge(name, endpoint.target_regions)


@endpoints_app.command()
def stop(name: str = typer.Argument(...), yes: bool = YesOption) -> None:
    """Scale the endpoint to zero in every region (the record stays). Asks first unless -y."""
    if not yes:
        typer.confirm(f"Stop endpoint {name}?", abort=True)
    regions = _set_state(name, STOPPED, allowed_from=("deploying", "running", "stopped"))
    typer.echo(f"Endpoint {name} stopping.")
    _nudge(name, regions)


@endpoints_app.command()
def start(name: str = typer.Argument(...)) -> None:
    """Start a stopped endpoint again (back to deploying; promoted to running when every region runs)."""
    regions = _set_state(
        name, DEPLOYING, allowed_from=("stopped", "deploying", "running"), keep_if=("running",)
    )
    typer.echo(f"Endpoint {name} starting.")
    _nudge(name, regions)


@endpoints_app.command()
def delete(
    name: str = typer.Argument(...),
    yes: bool = YesOption,
    force: bool = typer.Option(
        False,
        "--force",
        help="Mark it deleted even if the record is malformed (fails validation); target regions that "
        "are not in KNOWN_REGIONS are dropped so the record can be purged.",
    ),
) -> None:
    """Mark the endpoint deleted: each region removes its objects; the record is purged after. Asks
    first unless -y."""
    if not yes:
        typer.confirm(f"Delete endpoint {name} in every region?", abort=True)
    regions: list[str] = []
    if force:
        force_delete(name)
    else:
        regions = _set_state(name, DELETED, allowed_from=("deploying", "running", "stopped", "deleted"))
    typer.echo(f"Endpoint {name} marked for deletion.")
    _nudge(name, regions)


endpoints_app.command("repair")(repair_command)


@endpoints_app.command("update-image")
def update_image(
    name: str = typer.Argument(...),
    image: str = typer.Option(..., "-i", "--image", help="New container image."),
) -> None:
    """Roll out a new image (sets the endpoint deploying)."""
    endpoint = _edit(name, lambda spec: spec.with_changes(image=image))
    typer.echo(f"Endpoint {name} updating to {endpoint.spec.image}.")
    if endpoint.spec.region_image_uris:
        regions = ", ".join(sorted(endpoint.spec.region_image_uris))
        typer.echo(f"Note: region_image_uris still override the image in {regions}.")


@endpoints_app.command()
def canary(
    name: str = typer.Argument(...),
    image: str = typer.Option(..., "-i", "--image", help="Canary image."),
    weight: int = typer.Option(10, "--weight", help="Percent of traffic to the canary (1-99)."),
    replicas: int = typer.Option(1, "--replicas", help="Canary replicas."),
) -> None:
    """Start (or change) a canary that takes WEIGHT % of the traffic."""
    canary_map = {"image": image, "weight": weight, "replicas": replicas}
    _edit(name, lambda spec: spec.with_changes(canary=canary_map))
    typer.echo(f"Endpoint {name}: canary {image} at {weight}%.")


@endpoints_app.command()
def promote(name: str = typer.Argument(...)) -> None:
    """Make the canary image the primary image and remove the canary."""

    def mutate(spec: EndpointSpec) -> EndpointSpec:
        if spec.canary is None:
            _fail(f"endpoint {name!r} has no canary to promote")
        return spec.with_changes(image=spec.canary.image, canary=None)

    endpoint = _edit(name, mutate)
    typer.echo(f"Endpoint {name}: canary promoted, primary image is now {endpoint.spec.image}.")


@endpoints_app.command()
def rollback(name: str = typer.Argument(...)) -> None:
    """Remove the canary; all traffic goes back to the primary."""

    def mutate(spec: EndpointSpec) -> EndpointSpec:
        if spec.canary is None:
            _fail(f"endpoint {name!r} has no canary to roll back")
        return spec.with_changes(canary=None)

    _edit(name, mutate)
    typer.echo(f"Endpoint {name}: canary removed.")


class ListOutput(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


@endpoints_app.command("list")
def list_endpoints(
    region: str | None = typer.Option(
        None,
        "-r",
        "--region",
        help="Only endpoints targeting REGION, with what REGION reports.",
        autocompletion=complete_region,
    ),
    state: str | None = typer.Option(
        None,
        "--state",
        metavar="STATE",
        autocompletion=lambda incomplete: [s for s in STATES if s.startswith(incomplete)],
        help=f"Only endpoints whose region (or, without --region, any target region) reports STATE: "
        f"{', '.join(STATES)}.",
    ),
    output: ListOutput = typer.Option(
        ListOutput.table, "-o", "--output", help="table, wide (adds image, replicas, created), json or yaml."
    ),
    as_json: bool = typer.Option(False, "--json", help="Same as --output json."),
    allow_unknown_region: bool = AllowUnknownRegionOption,
) -> None:
    """List every endpoint (all Scan pages), newest first, with what each region reports: state,
    ready/desired replicas, the last report's age ((stale) once older than twice
    STATUS_HEARTBEAT_SECONDS) and message. Without --region, one column per target region."""
    settings = settings_or_fail()
    if region is not None:
        check_regions([region], allow_unknown_region, settings)
    if state is not None and state not in STATES:
        _fail(f"--state {state!r} is not a region state; use one of {', '.join(STATES)}")
    with open_store(settings) as store:
        items = list(store.scan_items(region))
    views = list_views(items, datetime.now(UTC), settings.status_heartbeat_seconds, region, state)
    chosen = "json" if as_json else str(output.value)
    if chosen in ("json", "yaml"):
        data = json.loads(json.dumps(list_json(views, region), default=json_fallback))
        text = json.dumps(data, indent=2) if chosen == "json" else yaml.safe_dump(data, sort_keys=False)
        typer.echo(text.rstrip("\n"))
        return
    if not views:
        typer.echo("No endpoints." if state is None else f"No endpoints in state {state}.")
        return
    typer.echo(columns(list_rows(views, region, wide=chosen == "wide")))


@endpoints_app.command("reconcile")
def reconcile_now(
    name: str = typer.Argument(..., help="Endpoint name."),
    regions: list[str] | None = typer.Option(
        None,
        "-r",
        "--region",
        help="Only this region (repeatable); default: every target region.",
        autocompletion=complete_region,
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for each region's reconcile and print what it did; exit 1 if one failed."
    ),
    timeout: float = typer.Option(120.0, "--timeout", min=1, help="With --wait: seconds to wait per region."),
    allow_unknown_region: bool = AllowUnknownRegionOption,
) -> None:
    """Ask each target region's fleet to reconcile NAME now (one reconcile_endpoint message on the
    region's queue, through REGION_REDIS_URLS) instead of at its next cycle; as `flux reconcile`. Exit 1
    when a region cannot be reached (or, with --wait, its reconcile failed or did not finish in time)."""
    settings = settings_or_fail()
    if regions:
        check_regions(regions, allow_unknown_region, settings)
    with _store() as store:
        item = store.get_item(_checked_name(name))
    if item is None:
        _fail(f"endpoint {name!r} not found")
    try:
        urls = parse_region_urls(settings.region_redis_urls.get_secret_value())
    except RegionUrlsError as exc:
        _fail(str(exc))
    if not urls:
        _fail(
            "REGION_REDIS_URLS is empty: set it to region=rediss://... pairs for the regions to reach "
            "(docs/configuration.md); without it each region reconciles at its next cycle"
        )
    failed = False
    with ExitStack() as clients:
        sent = {}
        for region in regions or RecordHeader.from_item(item).target_regions:
            url = urls.get(region)
            if url is None:
                typer.echo(
                    f"{region}: not reached (REGION_REDIS_URLS has no URL for it); its next cycle does it."
                )
                failed = True
                continue
            try:
                sent[region] = request(
                    clients.enter_context(region_client(url)), name, region, keep_result=wait
                )
            except Exception as exc:  # the broker's client: its text could hold the URL, its type cannot
                typer.echo(f"{region}: reconcile not reached ({type(exc).__name__}); its next cycle does it.")
                failed = True
                continue
            typer.echo(f"{region}: reconcile requested.")
        for region, result in sent.items() if wait else ():
            succeeded, line = outcome(result, timeout)
            typer.echo(f"{region}: {line}")
            failed = failed or not succeeded
    raise typer.Exit(1 if failed else 0)


endpoints_app.command("status")(status_command)


# --------------------------------------------------------------------------------------------------
# Shared steps
# --------------------------------------------------------------------------------------------------


def _set_state(
    name: str,
    state: DesiredState,
    allowed_from: tuple[str, ...],
    keep_if: tuple[str, ...] = (),
) -> list[str]:
    """Move ``desired_state`` to ``state``, conditional on the state read (no lost transitions); returns
    the regions that changed (none when the state already was ``state``). A write that loses to the
    fleet's promotion (``deploying`` -> ``running``) is re-read and re-applied (bounded); one that loses to
    another user's change of the desired state fails, saying what it became."""
    with _store() as store:
        endpoint = store.get(name)
        for _ in range(STATE_ATTEMPTS):
            current = endpoint.desired_state
            if current not in allowed_from:
                _fail(f"endpoint {name!r} is {current}; cannot make it {state}")
            if current == state or current in keep_if:
                return []
            if store.update_desired_state(name, state, expected_state=current):
                return list(endpoint.target_regions)
            item = store.get_item(name)
            now = item.get("desired_state") if item else None
            decision = state_decision(state, current, None if now is None else str(now))
            if decision == "done" or now in keep_if:
                return []
            if decision is None:
                _fail(state_conflict_message(name, state, current, item))
            endpoint = store.get(name)
        _fail(f"endpoint {name!r} kept changing ({STATE_ATTEMPTS} attempts); check `status {name}` and retry")
    raise AssertionError("unreachable")  # _store exits on every error


def _guarded(
    name: str, mutate: Callable[[EndpointSpec], EndpointSpec]
) -> Callable[[EndpointSpec], EndpointSpec]:
    """``mutate`` for ``update_spec``'s optimistic loop: re-applied on the record as it is now after the
    fleet's writes (a promotion moves ``updated_at``), refused when another writer changed a spec field
    this edit changes too (saying which, and from what to what)."""
    first: list[EndpointSpec] = []

    def apply(spec: EndpointSpec) -> EndpointSpec:
        if not first:
            first.append(spec)
            return mutate(spec)
        before = first[0].to_dict()
        overlap = spec_overlap(before, spec.to_dict(), mutate(first[0]).to_dict())
        if overlap:
            _fail(
                f"endpoint {name!r} was changed by someone else meanwhile ({'; '.join(overlap)}); "
                f"nothing written. Check `gco-tasks endpoints status {name}` and run the command again "
                "if it still applies"
            )
        return mutate(spec)

    return apply


def _edit(name: str, mutate: Callable[[EndpointSpec], EndpointSpec]) -> Endpoint:
    with _store() as store:
        endpoint = store.update_spec(name, _guarded(name, lambda spec: admit(mutate(spec), name, spec)))
    _nudge(name, endpoint.target_regions)
    return endpoint


def _nudge(name: str, regions: list[str]) -> None:
    """With ``REGION_REDIS_URLS`` set, ask each target region it names to reconcile ``name`` now."""
    try:
        urls = parse_region_urls(load_settings().region_redis_urls.get_secret_value())
    except (ConfigError, RegionUrlsError) as exc:
        typer.echo(f"Note: not asking the regions to reconcile now: {exc}", err=True)
        return
    for region, said in nudge(name, regions, urls).items():
        typer.echo(f"{region}: reconcile {said}.")
