"""The start-up checks of a worker or beat: the settings, the region, and for a worker a readable
Kubernetes configuration and an API server that answers, each problem in one sentence naming the setting.

Where it stands in the flow: at the very start of ``celery -A gco_tasks worker`` (Celery's
``celeryd_init``) and of beat (its scheduler), before either connects anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from gco_tasks.core.config import ConfigError, Settings, region_problem
from gco_tasks.worker.process import current_settings

#: Bound of the Kubernetes API check at a worker's start, seconds.
STARTUP_API_TIMEOUT_SECONDS = 5.0
#: Where Kubernetes mounts a pod's ServiceAccount token (the in-cluster configuration).
SERVICE_TOKEN_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


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


def startup_problem(role: Literal["worker", "beat"]) -> str | None:
    """Why this worker or beat cannot start, in one sentence naming the setting; None when it can.
    Settings (``REDIS_URL`` parsed, with its password masked), the region (``KNOWN_REGIONS``), and for a
    worker the Kubernetes configuration (in-cluster or ``KUBECONFIG``) and an answer from its API
    server within ``STARTUP_API_TIMEOUT_SECONDS``. Beat talks to Redis only. An unreachable Redis is
    not a problem here: Celery waits for it (``broker_connection_retry_on_startup``)."""
    try:
        settings = current_settings()
    except ConfigError as exc:
        return str(exc)
    problem = region_problem(settings)
    if problem is None and role == "worker":
        problem = kubernetes_problem(settings)
    return problem


def kubernetes_problem(settings: Settings) -> str | None:
    """No Kubernetes configuration, or an API server that does not answer ``/version``."""
    from kubernetes.client import VersionApi

    from gco_tasks.adapters.cluster import ClusterUnavailableError, load_api_client

    problem = kubeconfig_problem(os.environ, Path.home())
    if problem:
        return problem
    try:
        api_client = load_api_client()
    except ClusterUnavailableError as exc:
        return f"KUBECONFIG: {exc}"
    host = api_client.configuration.host
    timeout = min(STARTUP_API_TIMEOUT_SECONDS, settings.k8s_api_timeout)
    try:
        VersionApi(api_client).get_code(_request_timeout=timeout)
    except Exception as exc:  # any failure: one sentence, the first line of its reason
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return (
            f"the Kubernetes API server {host} (from KUBECONFIG or in-cluster) did not answer within "
            f"{timeout:.0f} s: {type(exc).__name__}: {reason}"
        )
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
    return None


def check_startup(role: Literal["worker", "beat"]) -> None:
    """Stop the process with ``gco-tasks: cannot start: <problem>`` on stderr (exit code 1) when
    ``startup_problem`` finds one."""
    problem = startup_problem(role)
    if problem:
        raise SystemExit(f"gco-tasks: cannot start: {problem}")
