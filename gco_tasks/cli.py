"""The `gco-tasks` command line: the operator's entry point.

Where it stands in the flow: outside the fleet. ``endpoints`` edits the desired state in DynamoDB (as
GCO's ``gco inference`` does), ``render`` shows what the fleet would apply for a record, and
``sandbox`` runs local stand-ins. The fleet itself runs under ``celery -A gco_tasks``.
Each group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from gco_tasks.cli_endpoints import endpoints_app
from gco_tasks.cli_render import render_command

app = typer.Typer(
    name="gco-tasks",
    help="GCO's inference-endpoint reconciler as a Celery worker fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(endpoints_app, name="endpoints")


def _add_sandbox() -> None:
    """``sandbox`` where the sandbox is installed (a checkout, a dev install); the production image ships
    without it (.dockerignore), and its CLI still works."""
    try:
        from gco_tasks.sandbox.cli import sandbox_app
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("gco_tasks.sandbox"):
            raise
        return
    app.add_typer(sandbox_app, name="sandbox")


_add_sandbox()
app.command("render")(render_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
