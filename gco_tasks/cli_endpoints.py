"""`gco-tasks endpoints ...`: edit the desired state in DynamoDB (placeholder until issue 2 lands)."""

from __future__ import annotations

import typer

endpoints_app = typer.Typer(help="Manage inference endpoints in the DynamoDB table.", no_args_is_help=True)


@endpoints_app.command("list")
def list_endpoints() -> None:
    """List endpoints (not implemented yet)."""
    raise typer.Exit(1)
