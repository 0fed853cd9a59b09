"""Kubernetes API servers for the tests, behind one face: the stand-in and the real control plane.

A pytest plugin (registered by ``tests/conftest.py``).

- ``real_cluster`` (session): the real control plane (``gco_sandbox/controlplane.py``: etcd,
  kube-apiserver, kube-controller-manager, kube-scheduler, kwok with fake GPU nodes), started once per run
  from the binaries ``make controlplane`` builds, stopped at the end. Without the binaries every test that
  needs it FAILS with the sentence saying to run ``make controlplane``: never a silent skip. When a test
  that used it fails, the end of each component's log is attached to its report.
- ``cluster`` (function): a ``Cluster`` (``kind``, ``api_client``, ``kubeconfig``, ``reset()``), reset
  before the test. Every test that needs it, directly or through a fixture such as ``fleet``, runs once per
  server: ``[standin]`` and ``[real]``. ``@pytest.mark.standin_only`` keeps a test on the stand-in (what
  only the stand-in has: request counters, fault injection, the simulated readiness delay);
  ``@pytest.mark.real_only`` keeps it on the real server (pods, nodes, controllers).

Reset on the real server deletes every Deployment, ReplicaSet, pod, Service, Ingress, HPA and Event in
gco-inference, labelled or not (a test's hand-made ``Deployment/demo`` too), and waits until they are gone,
so no test sees another's objects, pods or Events, and the fake GPUs are free again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.controlplane import ControlPlane, ControlPlaneMissing, raw

if TYPE_CHECKING:
    from gco_sandbox.apiserver import SandboxAPIServer

KINDS = ("standin", "real")
INFERENCE_NAMESPACE = "gco-inference"
INFERENCE_SELECTOR = "gco.io/type=inference"
RESET_TIMEOUT_SECONDS = 60.0


@dataclass
class Cluster:
    """One API server as the tests see it."""

    kind: str  # "standin" or "real"
    api_client: client.ApiClient
    kubeconfig: Path
    reset: Callable[[], None]
    plane: ControlPlane | None = None  # the real control plane
    standin: SandboxAPIServer | None = None  # the stand-in

    @property
    def real(self) -> bool:
        return self.kind == "real"


# --------------------------------------------------------------------------------------------------
# Hooks: markers, parametrization, logs on failure
# --------------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standin_only: runs on the stand-in API server only (counters, faults, simulated delay)"
    )
    config.addinivalue_line(
        "markers", "real_only: runs on the real control plane only (pods, nodes, controllers)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test needing ``cluster`` runs on both servers unless marked for one."""
    if "cluster" not in metafunc.fixturenames:
        return
    standin = metafunc.definition.get_closest_marker("standin_only") is not None
    real = metafunc.definition.get_closest_marker("real_only") is not None
    assert not (standin and real), f"{metafunc.definition.nodeid}: standin_only or real_only, not both"
    kinds = ["standin"] if standin else ["real"] if real else list(KINDS)
    metafunc.parametrize("cluster", kinds, indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.failed:
        plane = _plane_used_by(item)
        if plane is not None:
            report.sections.append(("real control plane: end of each component's log", plane.logs_tail()))
    return report


def _plane_used_by(item: pytest.Item) -> ControlPlane | None:
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    if isinstance(funcargs.get("real_cluster"), ControlPlane):
        return funcargs["real_cluster"]
    used = funcargs.get("cluster")
    return used.plane if isinstance(used, Cluster) else None


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The real control plane, once per run; its work directory (logs) under pytest's tmp dir."""
    try:
        plane = ControlPlane.start(workdir=tmp_path_factory.mktemp("controlplane"))
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def real_api_client(real_cluster: ControlPlane) -> Iterator[client.ApiClient]:
    with real_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="session")
def standin_kubeconfig(apiserver_server: SandboxAPIServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return apiserver_server.write_kubeconfig(tmp_path_factory.mktemp("standin") / "kubeconfig")


@pytest.fixture()
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The server named by the test's parameter, reset (see the module docstring)."""
    if request.param == "standin":
        server: SandboxAPIServer = request.getfixturevalue("apiserver")  # reset by that fixture
        kubeconfig: Path = request.getfixturevalue("standin_kubeconfig")
        api_client: client.ApiClient = request.getfixturevalue("kube_client")
        return Cluster("standin", api_client, kubeconfig, server.reset, standin=server)
    plane: ControlPlane = request.getfixturevalue("real_cluster")
    api_client = request.getfixturevalue("real_api_client")
    chosen = Cluster("real", api_client, plane.kubeconfig, lambda: reset_real(api_client), plane=plane)
    chosen.reset()
    return chosen


# --------------------------------------------------------------------------------------------------
# Reset of the real server
# --------------------------------------------------------------------------------------------------


def _collections(api_client: client.ApiClient) -> list[tuple[Callable[..., Any], Callable[..., Any]]]:
    """(delete_collection, list) of every kind the fleet's objects make, in deletion order."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    networking, autoscaling = client.NetworkingV1Api(api_client), client.AutoscalingV2Api(api_client)
    return [
        (networking.delete_collection_namespaced_ingress, networking.list_namespaced_ingress),
        (
            autoscaling.delete_collection_namespaced_horizontal_pod_autoscaler,
            autoscaling.list_namespaced_horizontal_pod_autoscaler,
        ),
        (core.delete_collection_namespaced_service, core.list_namespaced_service),
        (apps.delete_collection_namespaced_deployment, apps.list_namespaced_deployment),
        (apps.delete_collection_namespaced_replica_set, apps.list_namespaced_replica_set),
        (core.delete_collection_namespaced_pod, core.list_namespaced_pod),
    ]


def reset_real(api_client: client.ApiClient, namespace: str = INFERENCE_NAMESPACE) -> None:
    """Delete every object of those kinds in ``namespace``, with or without our labels (what a test made
    by hand too); wait until gone. Finalizers a test left on an Ingress (held as the AWS load balancer
    controller holds one) go first."""
    _release_ingress_finalizers(api_client, namespace)
    collections = _collections(api_client)
    deadline = time.monotonic() + RESET_TIMEOUT_SECONDS
    while True:
        left = []
        for delete, listing in collections:
            items = raw(listing, namespace)["items"]
            if items:
                left += [item["metadata"]["name"] for item in items]
                raw(delete, namespace, grace_period_seconds=0)
        if not left:  # then the Events about them (once: a deletion may still be adding some)
            raw(client.CoreV1Api(api_client).delete_collection_namespaced_event, namespace)
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"reset: still present after {RESET_TIMEOUT_SECONDS:.0f}s: {left}")
        time.sleep(0.1)


#: Finalizers the garbage collector sets and removes itself (a foreground or orphaning delete).
GC_FINALIZERS = frozenset({"foregroundDeletion", "orphan"})


def _release_ingress_finalizers(api_client: client.ApiClient, namespace: str) -> None:
    networking = client.NetworkingV1Api(api_client)
    listed = raw(networking.list_namespaced_ingress, namespace)["items"]
    for item in listed:
        if set(item["metadata"].get("finalizers") or ()) - GC_FINALIZERS:
            body = {"metadata": {"finalizers": None}}
            name, content = item["metadata"]["name"], "application/merge-patch+json"
            try:
                raw(networking.patch_namespaced_ingress, name, namespace, body, _content_type=content)
            except ApiException as exc:
                if exc.status != 404:  # gone meanwhile: nothing to release
                    raise


def inference_pods(api_client: client.ApiClient, selector: str = INFERENCE_SELECTOR) -> list[dict[str, Any]]:
    """The pods (as plain dicts) matching ``selector`` in gco-inference."""
    core = client.CoreV1Api(api_client)
    return list(raw(core.list_namespaced_pod, INFERENCE_NAMESPACE, label_selector=selector)["items"])


def pretty(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]
