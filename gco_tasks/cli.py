"""The `gco-tasks` command line: the operator's entry point.

Where it stands in the flow: outside the fleet. ``endpoints`` edits the desired state in DynamoDB (as
GCO's ``gco inference`` does), ``render`` shows what the fleet would apply for a record, and
``sandbox`` runs local stand-ins. The fleet itself runs under ``celery -A gco_tasks``.
Each group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from gco_tasks import __version__
from gco_tasks.cli_endpoints import endpoints_app
from gco_tasks.cli_help import TidyGroup
from gco_tasks.cli_render import render_command
from gco_tasks.sandbox.cli import sandbox_app

app = typer.Typer(
    name="gco-tasks",
    help="GCO's inference-endpoint reconciler as a Celery worker fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=TidyGroup,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gco-tasks {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GCO's inference-endpoint reconciler as a Celery worker fleet."""


app.add_typer(endpoints_app, name="endpoints")
app.add_typer(sandbox_app, name="sandbox")
app.command("render")(render_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
