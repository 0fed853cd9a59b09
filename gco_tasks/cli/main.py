"""The `gco-tasks` command line: the operator's entry point.

Where it stands in the flow: outside the fleet. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import typer

from gco_tasks import __version__
from gco_tasks.adapters import logging_setup
from gco_tasks.cli.diff import diff_command
from gco_tasks.cli.endpoints import endpoints_app
from gco_tasks.cli.help import TidyGroup
from gco_tasks.cli.render import render_command
from gco_tasks.core.config import ConfigError, load_settings

PLUGIN_GROUP = "gco_tasks.cli"
SANDBOX_MISSING = (
    "The local sandbox is not installed: it is the separate development package gco_sandbox/ beside "
    "gco_tasks/. Install it with `pip install -e ./gco_sandbox` (`make venv` does) and run "
    "`gco-tasks sandbox` again."
)


def build_app(plugins: Iterable[EntryPoint]) -> typer.Typer:
    """The CLI with its own groups and every plugin group; ``sandbox`` explains itself when absent."""
    cli = typer.Typer(
        name="gco-tasks",
        help="GCO's inference-endpoint reconciler as a Celery worker fleet.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        cls=TidyGroup,
    )
    cli.callback()(_root)
    cli.add_typer(endpoints_app, name="endpoints")
    cli.command("render")(render_command)
    cli.command("diff")(diff_command)
    names = set()
    for plugin in plugins:
        group = _load(plugin)
        if group is not None:
            cli.add_typer(group, name=plugin.name)
            names.add(plugin.name)
    if "sandbox" not in names:
        cli.command(
            "sandbox",
            help="Local stand-ins (not installed).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_sandbox_missing)
    return cli


def _load(plugin: EntryPoint) -> typer.Typer | None:
    """The plugin's command group; None when its package is registered but absent (metadata left behind
    by an uninstall, or a copied tree without it, as in the production image's build check)."""
    top = plugin.module.split(".")[0]
    try:
        group: typer.Typer = plugin.load()
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        return None
    return group


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gco-tasks {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GCO's inference-endpoint reconciler as a Celery worker fleet."""


def _sandbox_missing() -> None:
    typer.echo(SANDBOX_MISSING, err=True)
    raise typer.Exit(1)


app = build_app(entry_points(group=PLUGIN_GROUP))


def main() -> None:
    configure_logging()
    app()


def configure_logging(level: int = logging.WARNING) -> None:
    """The command's log lines (the libraries' warnings; the command's own output is printed) in
    ``LOG_FORMAT``, with the region. Invalid settings leave text logging: the commands that read the
    settings say what is wrong with them."""
    try:
        settings = load_settings()
    except ConfigError:
        logging_setup.configure("text", level)
        return
    logging_setup.configure(settings.log_format, level, region=settings.region)


if __name__ == "__main__":
    main()
