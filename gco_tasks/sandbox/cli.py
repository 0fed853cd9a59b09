"""`gco-tasks sandbox ...`: local stand-ins for what a region runs against.

Where it stands in the flow: outside the fleet. ``gco-tasks sandbox apiserver`` serves the sandbox
Kubernetes API server (a LOCAL STAND-IN, not Kubernetes) until interrupted and writes a kubeconfig for
it. The group runs a callback when called without a subcommand, so the one-command fleet
(``gco-tasks sandbox``, a later issue) can take over that case in ``_group`` without moving
``apiserver``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from gco_tasks.sandbox.resources import DEFAULT_VERSION

sandbox_app = typer.Typer(
    help="Local stand-ins: the sandbox Kubernetes API server and the one-command fleet.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@sandbox_app.callback()
def _group(ctx: typer.Context) -> None:
    """Local stand-ins (not for production)."""
    if ctx.invoked_subcommand is None:
        # The one-command fleet goes here; until then, say what there is.
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


@sandbox_app.command("apiserver")
def apiserver(
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1; 0 picks a free one and prints it."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Write a kubeconfig for it here."),
    ready_delay: float = typer.Option(1.0, "--ready-delay", help="Seconds until a Deployment is ready."),
    crashloop_pattern: str = typer.Option(
        "crashloop", "--crashloop-pattern", help="Images containing this never become ready."
    ),
    k8s_version: str = typer.Option(DEFAULT_VERSION, "--k8s-version", help="Schemas to validate against."),
) -> None:
    """Serve the sandbox Kubernetes API server (a local stand-in, not Kubernetes) until Ctrl-C/SIGTERM."""
    from gco_tasks.sandbox.apiserver import SandboxAPIServer

    server = SandboxAPIServer(
        port=port, ready_delay=ready_delay, crashloop_pattern=crashloop_pattern, validate_version=k8s_version
    ).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if kubeconfig is not None:
            server.write_kubeconfig(kubeconfig)
            typer.echo(f"kubeconfig: {kubeconfig}")
        if port == 0:
            typer.echo(f"port: {server.port}")
        typer.echo(f"sandbox API server (local stand-in, not Kubernetes) at {server.url}", nl=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        typer.echo("sandbox API server stopped")
