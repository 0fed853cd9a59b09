"""`gco-tasks sandbox ...`: local stand-ins (placeholder until issues 3 and 6 land)."""

from __future__ import annotations

import typer

sandbox_app = typer.Typer(help="Local stand-ins: API server and the one-command fleet.", no_args_is_help=True)


@sandbox_app.command("apiserver")
def apiserver() -> None:
    """Serve the sandbox Kubernetes API server (not implemented yet)."""
    raise typer.Exit(1)
