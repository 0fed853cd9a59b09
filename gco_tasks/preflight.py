"""What a fleet process checks before it starts, so a wrong environment fails at once, in one sentence.

Where it stands in the flow: at the very start of ``celery -A gco_tasks worker`` (Celery's
``celeryd_init`` signal, connected by ``install``) and ``... beat`` (its scheduler,
``CheckedRedBeatScheduler``). Each region runs its own
fleet, so guessing the region is worse than stopping: GCO's monitor defaulted ``REGION`` to us-east-1,
and a fleet started without it served us-east-1's queue and reported into us-east-1's status. Here a
worker or beat without an explicit ``REGION`` (or with one that is not in ``KNOWN_REGIONS``) refuses to
start, and a worker refuses when no Kubernetes configuration can be read (outside a cluster: the file
``KUBECONFIG`` names, or ~/.kube/config), naming the variable and the path.

The operator's CLI does not go through here: its table commands work without ``REGION``. Celery's
in-process test worker does not send ``celeryd_init`` either (tests pass their own settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from redbeat import RedBeatScheduler

from gco_tasks.config import Settings, load_settings
from gco_tasks.regions import known_regions, region_problem

#: Where Kubernetes mounts a pod's ServiceAccount token (the in-cluster configuration).
SERVICE_TOKEN_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def fleet_region_problem(settings: Settings) -> str | None:
    """Why this process cannot tell which region it serves, in one sentence; None when it can."""
    if not settings.region_is_explicit:
        return (
            "REGION is not set: set it to the region this fleet reconciles (e.g. REGION=us-east-1); "
            "the fleet does not guess it"
        )
    problem = region_problem(settings.region, known_regions(settings.known_regions))
    return f"REGION: {problem}" if problem else None


def kubeconfig_problem(
    environ: Mapping[str, str], home: Path, token_file: Path = SERVICE_TOKEN_FILE
) -> str | None:
    """Why no Kubernetes configuration can be read, naming the variable and the path; None when the
    in-cluster configuration applies or every file ``KUBECONFIG`` lists (or ~/.kube/config) is readable."""
    if environ.get("KUBERNETES_SERVICE_HOST") and token_file.is_file():
        return None
    listed = environ.get("KUBECONFIG", "")
    paths = [part for part in listed.split(os.pathsep) if part]
    if not paths:
        default = home / ".kube" / "config"
        if _file_problem(default) is None:
            return None
        return (
            f"no Kubernetes configuration: not in a cluster, KUBECONFIG is not set and {default} does not "
            "exist; set KUBECONFIG to the region's kubeconfig file"
        )
    for path in paths:
        problem = _file_problem(Path(path).expanduser())
        if problem is not None:
            return f"KUBECONFIG={listed}: {problem}; point KUBECONFIG at the region's kubeconfig file"
    return _loading_problem(listed)


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    return None


def _loading_problem(listed: str) -> str | None:
    """What the Kubernetes client says about the files (bad YAML, no current context ...)."""
    from kubernetes import client, config

    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=listed, client_configuration=client.Configuration()
        )
    except Exception as exc:  # ConfigException, YAML errors ...: the file's fault, one sentence either way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"KUBECONFIG={listed}: not a usable kubeconfig ({reason}); point it at the region's kubeconfig"
    return None


def refuse(problem: str) -> None:
    """Stop the process with ``gco-tasks: <problem>`` on stderr and exit code 1."""
    raise SystemExit(f"gco-tasks: cannot start: {problem}")


def check_worker(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """The worker needs its region and a cluster."""
    environ = os.environ if environ is None else environ
    problem = fleet_region_problem(settings) or kubeconfig_problem(environ, Path.home())
    if problem:
        refuse(problem)


def check_beat(settings: Settings) -> None:
    """Beat needs its region (its schedule and lock are per region); it never talks to a cluster."""
    problem = fleet_region_problem(settings)
    if problem:
        refuse(problem)


def install(settings: Callable[[], Settings]) -> None:
    """Run ``check_worker`` on this process's ``settings()`` when ``celery worker`` starts (Celery's
    ``celeryd_init``, which the command sends before it connects anywhere). Beat checks itself in
    ``CheckedRedBeatScheduler``."""
    from celery import signals

    def on_worker(**_: Any) -> None:
        check_worker(settings())

    signals.celeryd_init.connect(on_worker, weak=False)


class CheckedRedBeatScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat, after ``check_beat``: beat's own signal comes after the scheduler has connected to Redis,
    so the check runs when the scheduler is built, before that (``beat_scheduler`` names this class)."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        check_beat(load_settings())
        super().__init__(app, *args, **kwargs)
