"""The `gco-tasks` command line: the operator's entry point.

Where it stands in the flow: outside the fleet. ``endpoints`` edits the desired state in DynamoDB (as
GCO's ``gco inference`` does), ``render`` shows what the fleet would apply for a record and ``diff``
what its next reconcile would change in a region (a server-side dry run). The fleet
itself runs under ``celery -A gco_tasks``.

Other packages add command groups through the entry-point group ``gco_tasks.cli``: the local sandbox
(``gco_sandbox``, a separate distribution for development) registers ``sandbox`` there, so the product
never imports it and its wheel does not need it. Without the sandbox installed, ``gco-tasks sandbox``
says how to install it.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import typer

from gco_tasks.cli.diff import diff_command
from gco_tasks.cli.endpoints import endpoints_app
from gco_tasks.cli.render import render_command

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
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    cli.add_typer(endpoints_app, name="endpoints")
    cli.command("render")(render_command)
    cli.command("diff")(diff_command)
    names = set()
    for plugin in plugins:
        cli.add_typer(plugin.load(), name=plugin.name)
        names.add(plugin.name)
    if "sandbox" not in names:
        cli.command(
            "sandbox",
            help="Local stand-ins (not installed).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_sandbox_missing)
    return cli


def _sandbox_missing() -> None:
    typer.echo(SANDBOX_MISSING, err=True)
    raise typer.Exit(1)


app = build_app(entry_points(group=PLUGIN_GROUP))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
