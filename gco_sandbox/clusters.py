"""One Kubernetes cluster per sandbox region, as in production, from a factory that can be swapped.

Where it stands in the flow: before the fleet, on a laptop. Each region's fleet treats every object with
its labels and no record targeting the region as an orphan and deletes it; regions sharing one API
server would therefore delete each other's objects. ``gco-tasks sandbox`` asks a ``ClusterFactory``
for one cluster per region (its own API server, its own kubeconfig) and gives each region's worker its
own ``KUBECONFIG``; the operator's shell gets ``KUBECONFIG_<REGION>`` for each (``endpoints status``
reads Events through them).

``standin_cluster`` (the default) starts the sandbox API server, a local stand-in written for this
project; ``real_cluster`` (``--cluster real``) a real control plane (``controlplane.py``) per region.
Anything with ``url``, ``kubeconfig`` and ``stop()`` is a ``RegionCluster``; one that also has
``check_alive()`` is checked while the sandbox runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gco_sandbox.apiserver import SandboxAPIServer

STANDIN_READY_DELAY_SECONDS = 1.0


class RegionCluster(Protocol):
    """A started cluster for one region: where its API server is, a kubeconfig for it, and how to stop it."""

    @property
    def url(self) -> str: ...

    @property
    def kubeconfig(self) -> Path: ...

    def stop(self) -> None: ...


#: (region, the region's own directory under the state directory) -> a started cluster.
ClusterFactory = Callable[[str, Path], RegionCluster]


@dataclass
class StandInCluster:
    """The sandbox API server (a local stand-in, not Kubernetes) serving one region."""

    server: SandboxAPIServer
    kubeconfig: Path

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


def standin_cluster(region: str, workdir: Path) -> StandInCluster:
    """Start a sandbox API server for ``region`` and write its kubeconfig (context ``sandbox-<region>``)
    into ``workdir``."""
    server = SandboxAPIServer(port=0, ready_delay=STANDIN_READY_DELAY_SECONDS).start()
    try:
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig.yaml", context=f"sandbox-{region}")
    except BaseException:
        server.stop()
        raise
    return StandInCluster(server, kubeconfig)


def real_cluster(region: str, workdir: Path) -> RegionCluster:
    """A real control plane for ``region`` (etcd, kube-apiserver, controllers, scheduler, kwok), its
    logs and kubeconfig under ``workdir/controlplane``."""
    from gco_sandbox.controlplane import ControlPlane

    return ControlPlane.start(workdir=workdir / "controlplane")


def factory(kind: str) -> ClusterFactory:
    """The factory of ``--cluster standin|real``."""
    return real_cluster if kind == "real" else standin_cluster


def start_clusters(regions: list[str], state_dir: Path, factory: ClusterFactory) -> dict[str, RegionCluster]:
    """One cluster per region, each in ``<state_dir>/<region>/``; on a failure the ones started are
    stopped before the error goes up."""
    started: dict[str, RegionCluster] = {}
    try:
        for region in regions:
            workdir = state_dir / region
            workdir.mkdir(parents=True, exist_ok=True)
            started[region] = factory(region, workdir)
    except BaseException:
        stop_clusters(started)
        raise
    return started


def stop_clusters(clusters: dict[str, RegionCluster]) -> None:
    """Stop every cluster; one failing to stop does not keep the others running."""
    for cluster in clusters.values():
        with contextlib.suppress(Exception):  # shutting down: the next one must still stop
            cluster.stop()
