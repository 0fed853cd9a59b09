"""Whether a worker can read a Kubernetes configuration at all, in one sentence naming the variable and
the path: part of the start-up checks (``app.startup_problem``, which also checks ``REGION`` through
``config.region_problem`` and that the API server answers).

Where it stands in the flow: at the very start of ``celery -A gco_tasks worker``, before it connects
anywhere. Outside a cluster the configuration is the file ``KUBECONFIG`` names (or ~/.kube/config); a
missing, unreadable or unusable one stops the worker with the fix, instead of failing late and vaguely
in the first reconcile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

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
