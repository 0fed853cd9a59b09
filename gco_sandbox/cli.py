"""`gco-tasks sandbox ...`: local stand-ins for what a region runs against.

Where it stands in the flow: outside the fleet. ``gco-tasks sandbox apiserver`` serves the sandbox
Kubernetes API server (a LOCAL STAND-IN, not Kubernetes) until interrupted and writes a kubeconfig for
it. Without a subcommand, ``gco-tasks sandbox`` runs the whole fleet locally (``up.py``), against the
stand-in or, with ``--cluster real``, against the real control plane (``controlplane.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType

import typer
from rich.console import Console

from gco_sandbox.resources import DEFAULT_VERSION


class ClusterKind(StrEnum):
    """Which Kubernetes API server the sandbox's fleet talks to."""

    standin = "standin"
    real = "real"


sandbox_app = typer.Typer(
    help="Local stand-ins: the sandbox Kubernetes API server and the one-command fleet.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@sandbox_app.callback()
def _group(
    ctx: typer.Context,
    regions: list[str] | None = typer.Option(
        None,
        "--region",
        help="Region to run: its own API server, worker and beat (repeatable; default $REGION or us-east-1).",
    ),
    allow_unknown_region: bool = typer.Option(
        False, "--allow-unknown-region", help="Accept a region that is not in KNOWN_REGIONS."
    ),
    empty: bool = typer.Option(False, "--empty", help="Do not deploy the two example endpoints."),
    env_file: Path | None = typer.Option(
        None,
        "--env-file",
        help="Where to write the environment for another shell (`source` it); default STATE_DIR/env. "
        "Kept when the sandbox stops, marked stale.",
    ),
    interval: int = typer.Option(5, "--interval", min=1, help="RECONCILE_INTERVAL_SECONDS of the fleet."),
    flower_port: int | None = typer.Option(None, "--flower-port", help="Default 5555, or a free port."),
    live: bool | None = typer.Option(
        None, "--live/--no-live", help="Live table, or a line per change (default: live on a terminal)."
    ),
    state_dir: Path = typer.Option(
        Path(".sandbox"), "--state-dir", help="Logs, env file, a kubeconfig per region, pids.json."
    ),
    cluster: ClusterKind = typer.Option(
        ClusterKind.standin,
        "--cluster",
        help="standin: a sandbox API server per region; real: per region a kube-apiserver, controllers, "
        "scheduler and kwok (built by `make controlplane`).",
    ),
) -> None:
    """Local stand-ins (not for production). Without a subcommand: the whole fleet on this machine
    (redis-server, DynamoDB, per region an API server, a Celery worker and beat; Flower)."""
    if ctx.invoked_subcommand is not None:
        return
    from gco_sandbox import clusters, stack, up

    console = Console(soft_wrap=True)
    chosen = stack.unique_regions(regions or _default_regions(console))
    known = os.environ.get("KNOWN_REGIONS", "")
    problems = stack.check_regions(chosen, known, allow_unknown_region)
    if problems:
        raise typer.BadParameter("; ".join(problems), param_hint="--region")
    options = up.Options(
        regions=chosen,
        state_dir=state_dir.resolve(),
        empty=empty,
        env_file=env_file.resolve() if env_file else None,
        interval=interval,
        flower_port=flower_port,
        live=sys.stdout.isatty() if live is None else live,
        extra_known_regions=stack.extra_known_regions(chosen, known),
        cluster_factory=clusters.factory(cluster.value),
    )
    raise typer.Exit(up.run(options, console))


def _default_regions(console: Console) -> list[str]:
    from gco_sandbox import stack

    regions, note = stack.default_regions(os.environ)
    console.print(note, highlight=False, markup=False)
    return regions


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
    from gco_sandbox.apiserver import SandboxAPIServer

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
