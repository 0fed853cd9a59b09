"""Small pieces every ``gco-tasks`` command shares: failing with one sentence, the settings, the region check
at the door, and the options that go with them.

Where it stands in the flow: outside the fleet, in the operator's CLI (``cli_endpoints``, ``cli_render``,
``cli_status``, ``cli_repair``, the sandbox's command). More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from gco_tasks.adapters.store import EndpointStore, MalformedRecordError, StoreError
from gco_tasks.core.config import ConfigError, Settings, load_settings
from gco_tasks.core.records import InvalidEndpointError
from gco_tasks.core.regions import known_regions, region_problems

AllowUnknownRegionOption = typer.Option(
    False,
    "--allow-unknown-region",
    help="Accept a region that is not in KNOWN_REGIONS (a new region; its name is still checked).",
)


def fail(message: str) -> NoReturn:
    """Print ``Error: <message>`` on stderr and exit 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def settings_or_fail() -> Settings:
    """The settings from the environment; a bad variable exits 1 with the message naming it."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc))


def check_regions(regions: Iterable[str], allow_unknown: bool, settings: Settings | None = None) -> None:
    """Exit 1 with one sentence per bad region (unknown, or not shaped like a region), before anything
    is written or read."""
    known = known_regions((settings or settings_or_fail()).known_regions)
    problems = region_problems(regions, known, allow_unknown)
    if problems:
        for problem in problems[:-1]:
            typer.echo(f"Error: {problem}", err=True)
        fail(problems[-1])


def complete_region(incomplete: str) -> list[str]:
    """Shell completion of a region option: the known regions (``KNOWN_REGIONS``, or AWS's) that start
    with what was typed."""
    try:
        setting = load_settings().known_regions
    except ConfigError:
        setting = ""
    return [region for region in known_regions(setting) if region.startswith(incomplete)]


def malformed_message(exc: MalformedRecordError) -> str:
    """What a malformed record is, and the two ways out."""
    name = exc.name or "NAME"
    return (
        f"{exc}; `gco-tasks endpoints repair {name}` shows what is wrong and fixes it, "
        f"`gco-tasks endpoints delete --force {name}` deletes it as it is"
    )


@contextmanager
def open_store(settings: Settings | None = None) -> Iterator[EndpointStore]:
    """The store from the environment; every failure the user can act on becomes one sentence and exit
    code 1 (a malformed record points at ``repair`` and ``delete --force``)."""
    try:
        yield EndpointStore.from_settings(settings or load_settings())
    except MalformedRecordError as exc:
        fail(malformed_message(exc))
    except (ConfigError, InvalidEndpointError, StoreError) as exc:
        fail(str(exc))
