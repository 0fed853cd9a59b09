"""`gco-tasks render`: dry-run rendering of one endpoint (placeholder until issue 4 lands)."""

from __future__ import annotations

import typer


def render_command(name: str = typer.Argument(..., help="Endpoint name.")) -> None:
    """Print the Kubernetes objects the fleet would apply for NAME (not implemented yet)."""
    raise typer.Exit(1)
