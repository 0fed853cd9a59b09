"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, built from the official sources by ``controlplane/build.sh`` (``make
controlplane``) and started here on free loopback ports.

Where it stands in the flow: beside the fleet, never inside it. The tests (``tests/clusters.py``), the
sandbox (``gco-tasks sandbox --cluster real``) and benchmarks start one with ``ControlPlane.start()`` and
point the fleet's ``ApiClient`` (or ``KUBECONFIG``) at it; the fleet cannot tell it from a region's EKS
API server. This is Kubernetes, not a model of it: the Deployment, ReplicaSet, HPA, garbage-collector,
namespace, ServiceAccount and node-lifecycle controllers run; the scheduler places pods on fake nodes
that kwok keeps alive, shaped like the GPU nodes endpoints target (``nvidia.com/gpu`` or
``aws.amazon.com/neuron`` capacity, instance-type and Karpenter capacity-type labels, GPU taints). kwok's
Stages (``kwok/*.yaml`` beside this module) play the kubelet: a scheduled pod becomes Ready about 1 s
later; an image containing ``unpullable`` stays Pending in ``ImagePullBackOff``; one containing
``crashloop`` runs in ``CrashLoopBackOff``, never Ready. No container runs and nothing serves traffic.
A small resource metrics API (``metrics_api.py``, registered as the ``v1beta1.metrics.k8s.io``
APIService) reports the CPU and memory use a test writes on a pod (kwok's ``kwok.x-k8s.io/usage-cpu``
and ``-memory`` annotations), so the HPA controller scales on it; pods without them have no metrics.

What start does, in order: a private work directory (or the one given), a CA and certificates
(``pki.py``), etcd (loopback, ``--unsafe-no-fsync``), kube-apiserver (Node+RBAC authorization,
ServiceAccount token issuer, the default admission plugins plus the two more EKS enables), then the
controller-manager, scheduler, kwok and the metrics API, the fake nodes, the namespaces the fleet uses
and the ServiceAccount its pods run as. Ready means ``/readyz`` answers ok, every fake node is Ready and
schedulable, the ``default`` ServiceAccount exists and the metrics APIService is Available. ``stop()``
ends every process group it started. Each component's log stays in the work directory; ``logs_tail()``
shows the end of each.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client

from gco_sandbox import metrics_api
from gco_sandbox.children import Child, Children
from gco_sandbox.pki import Pki, write_pki
from gco_sandbox.services import free_port

log = logging.getLogger(__name__)

VERSIONS_FILE = Path("controlplane") / "versions.env"
STAGES_DIR = Path(__file__).with_name("kwok")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the first address: the in-cluster `kubernetes` Service
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
NAMESPACES = ("gco-system", "gco-inference")
#: (namespace, name) of the ServiceAccount inference pods run as (settings INFERENCE_SERVICE_ACCOUNT).
POD_SERVICE_ACCOUNT = ("gco-inference", "gco-service-account")
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
#: Controllers the fleet's objects need; the rest of the default set only slows the start.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "horizontal-pod-autoscaler-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "endpointslice-controller",
)
#: EKS enables these on top of kube-apiserver's default admission plugins (EKS platform versions page).
EXTRA_ADMISSION_PLUGINS = ("NodeRestriction", "ExtendedResourceToleration")
START_TIMEOUT_SECONDS = 90.0
PORT_ATTEMPTS = 3
#: What a previous start left in a reused work directory (logs are simply overwritten).
STALE_STATE = ("etcd-data", "pki", "apiserver-certs")
LOG_TAIL_LINES = 30


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (or a component died); the message says which and why."""


class ControlPlaneMissing(ControlPlaneError):
    """The binaries are not built yet."""


# --------------------------------------------------------------------------------------------------
# Versions and binaries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    etcd: str
    kwok: str


def versions_file(start: Path | None = None) -> Path:
    """``controlplane/versions.env`` of the checkout this module lives in (found upwards, so it does not
    matter where in the tree the module sits)."""
    here = (start or Path(__file__)).resolve()
    for folder in here.parents:
        if (folder / VERSIONS_FILE).is_file():
            return folder / VERSIONS_FILE
    raise ControlPlaneMissing(f"{VERSIONS_FILE} not found above {here}: run this from a gco-tasks checkout")


def pinned_versions(path: Path | None = None) -> Versions:
    """The versions ``controlplane/build.sh`` builds (``KEY=VALUE`` lines of ``versions.env``)."""
    values: dict[str, str] = {}
    for line in (path or versions_file()).read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return Versions(values["K8S_VERSION"], values["ETCD_VERSION"], values["KWOK_VERSION"])


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where build.sh puts the binaries: ``$GCO_CACHE_DIR`` or ``$XDG_CACHE_HOME/gco-tasks`` or
    ``~/.cache/gco-tasks``, then ``controlplane/``."""
    env = os.environ if environ is None else environ
    base = env.get("GCO_CACHE_DIR") or str(
        Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gco-tasks"
    )
    return Path(base) / "controlplane"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path


def find_binaries(root: Path | None = None, versions: Versions | None = None) -> Binaries:
    """The built binaries of the pinned versions; ``ControlPlaneMissing`` (one sentence saying to run
    ``make controlplane``) when any is not there yet."""
    root = root or cache_root()
    pinned = versions or pinned_versions()
    folders = {
        "kubernetes": root / f"kubernetes-{pinned.kubernetes}",
        "etcd": root / f"etcd-{pinned.etcd}",
        "kwok": root / f"kwok-{pinned.kwok}",
    }
    missing = [name for name, folder in folders.items() if not (folder / ".complete").is_file()]
    if missing:
        raise ControlPlaneMissing(
            f"the local Kubernetes control plane is not built ({', '.join(missing)} missing in {root}): "
            "run `make controlplane` (a first build takes a while)"
        )
    k8s = folders["kubernetes"] / "bin"
    return Binaries(
        etcd=folders["etcd"] / "bin" / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=folders["kwok"] / "bin" / "kwok",
    )


# --------------------------------------------------------------------------------------------------
# Fake nodes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeNode:
    """A node kwok keeps alive, shaped like an EKS GPU (or Inferentia) node Karpenter launched."""

    name: str
    instance_type: str
    capacity_type: str  # karpenter.sh/capacity-type: on-demand | spot
    accelerator: str  # nvidia | neuron
    devices: int
    cpu: str = "192"
    memory: str = "2Ti"

    @property
    def device_resource(self) -> str:
        return "nvidia.com/gpu" if self.accelerator == "nvidia" else "aws.amazon.com/neuron"

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": self.instance_type,
            "karpenter.sh/capacity-type": self.capacity_type,
            "type": "kwok",
        }
        if self.accelerator == "nvidia":
            labels["eks.amazonaws.com/instance-gpu-manufacturer"] = "nvidia"
        else:
            labels["accelerator"] = "neuron"
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": "250",
            "ephemeral-storage": "1Ti",
            self.device_resource: str(self.devices),
        }
        taint = {"key": self.device_resource, "value": "true", "effect": "NoSchedule"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    FAKE_NODE_ANNOTATION[0]: FAKE_NODE_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": {"taints": [taint]},
            "status": {"capacity": resources, "allocatable": resources},
        }


FAKE_NODES: tuple[FakeNode, ...] = (
    FakeNode("gpu-p5-on-demand-1", "p5.48xlarge", "on-demand", "nvidia", 8),
    FakeNode("gpu-p5-on-demand-2", "p5.48xlarge", "on-demand", "nvidia", 8),
    FakeNode("gpu-g6e-spot-1", "g6e.48xlarge", "spot", "nvidia", 8, memory="1536Gi"),
    FakeNode("neuron-inf2-on-demand-1", "inf2.48xlarge", "on-demand", "neuron", 12, memory="768Gi"),
)


# --------------------------------------------------------------------------------------------------
# Command lines (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    metrics_api: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


def etcd_argv(binary: Path, data_dir: Path, ports: Ports) -> list[str]:
    client_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=gco-local",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=gco-local={peer_url}",
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]


def apiserver_argv(binary: Path, pki: Pki, ports: Ports, cert_dir: Path) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={','.join(EXTRA_ADMISSION_PLUGINS)}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # The `kubernetes` Service would point at 127.0.0.1, which Endpoints validation refuses.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        # The aggregator's identity towards the metrics API (which accepts only certificates of our CA).
        f"--proxy-client-cert-file={pki.client_cert('front-proxy')}",
        f"--proxy-client-key-file={pki.client_key('front-proxy')}",
    ]


def controller_manager_argv(binary: Path, kubeconfig: Path, pki: Pki) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--controllers={','.join(CONTROLLERS)}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--horizontal-pod-autoscaler-sync-period=5s",
        "--node-monitor-period=2s",
        "--node-monitor-grace-period=60s",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]


def scheduler_argv(binary: Path, kubeconfig: Path) -> list[str]:
    return [str(binary), f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--secure-port=0"]


def kwok_argv(binary: Path, kubeconfig: Path, stages: list[Path]) -> list[str]:
    annotation = "=".join(FAKE_NODE_ANNOTATION)
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        *[f"--config={stage}" for stage in stages],
        f"--manage-nodes-with-annotation-selector={annotation}",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
    ]


def stage_files() -> list[Path]:
    """The kwok Stages shipped beside this module."""
    return sorted(STAGES_DIR.glob("*.yaml"))


def kubeconfig_text(server: str, pki: Pki, user: str, namespace: str = "gco-inference") -> str:
    """A kubeconfig for ``server`` as client-certificate identity ``user`` (file paths, not inline)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "gco-local", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.client_cert(user)),
                    "client-key": str(pki.client_key(user)),
                },
            }
        ],
        "contexts": [
            {"name": "gco-local", "context": {"cluster": "gco-local", "user": user, "namespace": namespace}}
        ],
        "current-context": "gco-local",
    }
    return yaml.safe_dump(config, sort_keys=False)


# --------------------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------------------

#: Components in start order; stop goes the other way, clients before the API server, etcd last.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "metrics-api")


@dataclass
class ControlPlane:
    """A running control plane. Build one with ``ControlPlane.start()``; always ``stop()`` it (or use it
    as a context manager)."""

    workdir: Path
    binaries: Binaries
    owns_workdir: bool
    ports: Ports = field(default_factory=lambda: Ports.free())
    children: Children = field(init=False)
    pki: Pki = field(init=False)
    timings: dict[str, float] = field(default_factory=dict)
    started_in: float = 0.0
    _stopped: bool = False

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.children = Children(self.workdir)
        self.pki = Pki(self.workdir / "pki")

    # ---------------------------------------------------------------- public

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        binaries: Binaries | None = None,
        timeout: float = START_TIMEOUT_SECONDS,
    ) -> ControlPlane:
        """Start every component and wait until the cluster is ready (see the module docstring).
        ``workdir`` None: a temporary directory, removed by ``stop()``. A given one is kept (logs) and may
        be reused: a previous cluster's data and certificates in it are removed first. Ports are free
        when chosen but may be taken before a component binds them: then it starts over on new ones."""
        found = binaries or find_binaries()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            folder = (
                Path(tempfile.mkdtemp(prefix="gco-controlplane-")) if workdir is None else workdir.resolve()
            )
            for stale in STALE_STATE:
                shutil.rmtree(folder / stale, ignore_errors=True)
            plane = cls(folder, found, owns_workdir=workdir is None)
            try:
                plane._boot(time.monotonic() + timeout)
            except ControlPlaneError as exc:
                lost_port = "address already in use" in str(exc)
                plane.stop()
                if lost_port and attempt < PORT_ATTEMPTS:
                    log.warning("control plane: a port was taken before it was bound; starting over")
                    continue
                raise
            except BaseException:
                plane.stop()
                raise
            return plane
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``system:masters``), default namespace gco-inference."""
        return self.workdir / "kubeconfig"

    @property
    def fake_nodes(self) -> tuple[FakeNode, ...]:
        return FAKE_NODES

    def configuration(self) -> client.Configuration:
        """An official client configuration for the admin identity."""
        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.pki.ca_cert)
        configuration.cert_file = str(self.pki.client_cert("admin"))
        configuration.key_file = str(self.pki.client_key("admin"))
        configuration.retries = 0
        return configuration

    def api_client(self) -> client.ApiClient:
        """A new official ``ApiClient`` for the admin identity (close it when done)."""
        return client.ApiClient(self.configuration())

    def token_client(self, token: str) -> client.ApiClient:
        """A new ``ApiClient`` that authenticates with a bearer ``token`` only (e.g. a ServiceAccount's)."""
        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.pki.ca_cert)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.retries = 0
        return client.ApiClient(configuration)

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of each component's log, for a failing test's report."""
        parts = []
        for name in COMPONENTS:
            path = self.workdir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts)

    def check_alive(self) -> None:
        """Raise ``ControlPlaneError`` (with its log tail) if a component has exited."""
        dead = self.children.first_dead()
        if dead is not None:
            raise ControlPlaneError(_died(dead))

    def stop(self) -> None:
        """Stop every process group started (clients, then the API server, then etcd); idempotent.
        Removes the work directory when ``start`` created it."""
        if self._stopped:
            return
        self._stopped = True
        clients = ("metrics-api", "kwok", "kube-scheduler", "kube-controller-manager")
        for tier in (clients, ("kube-apiserver",), ("etcd",)):
            killed = self.children.stop(tier, timeout=10.0)
            if killed:
                log.warning("control plane: %s did not stop within 10 s and were killed", ", ".join(killed))
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- start, step by step

    def _boot(self, deadline: float) -> None:
        began = time.monotonic()
        with self._timed("pki"):
            write_pki(self.pki.directory, SERVICE_IP, metrics_api.service_dns_name())
            for who in ("admin", "controller-manager", "scheduler"):
                text = kubeconfig_text(self.url, self.pki, who)
                self._kubeconfig_path(who).write_text(text)
        env = _component_env()
        with self._timed("etcd"):
            argv = etcd_argv(self.binaries.etcd, self.workdir / "etcd-data", self.ports)
            self._run("etcd", argv, env)
            self._wait("etcd healthy", self._etcd_healthy, deadline)
        with self._timed("kube-apiserver"):
            argv = apiserver_argv(
                self.binaries.kube_apiserver, self.pki, self.ports, self.workdir / "apiserver-certs"
            )
            self._run("kube-apiserver", argv, env)
            self._wait("kube-apiserver /readyz", self._apiserver_ready, deadline)
        with self._timed("controllers, scheduler, kwok, nodes"):
            self._start_clients(env)
            with self.api_client() as api:
                self._create_objects(api)
                self._wait(
                    "fake nodes Ready and schedulable", lambda: _nodes_ready(api, FAKE_NODES), deadline
                )
                self._wait("the default ServiceAccount", lambda: _default_account(api), deadline)
                self._wait("the metrics API listening", lambda: _listening(self.ports.metrics_api), deadline)
                self._register_metrics(api)
                self._wait("the metrics APIService Available", lambda: _metrics_available(api), deadline)
        self.started_in = time.monotonic() - began
        log.info(
            "control plane ready in %.1fs at %s (%s)",
            self.started_in,
            self.url,
            ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()),
        )
        (self.workdir / "timings.json").write_text(
            json.dumps({"total": self.started_in, **self.timings}, indent=2)
        )

    def _start_clients(self, env: Mapping[str, str]) -> None:
        kcm = controller_manager_argv(
            self.binaries.kube_controller_manager, self._kubeconfig_path("controller-manager"), self.pki
        )
        self._run("kube-controller-manager", kcm, env)
        scheduler = scheduler_argv(self.binaries.kube_scheduler, self._kubeconfig_path("scheduler"))
        self._run("kube-scheduler", scheduler, env)
        self._run("kwok", kwok_argv(self.binaries.kwok, self.kubeconfig, stage_files()), env)
        metrics = metrics_api.argv(
            self.ports.metrics_api,
            self.pki.metrics_cert,
            self.pki.metrics_key,
            self.pki.ca_cert,
            self.kubeconfig,
        )
        self._run("metrics-api", metrics, env)

    def _run(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        """Start one component in its own process group, killed with this process should it die first."""
        self.children.start(name, argv, env, die_with_parent=True)

    def _create_objects(self, api: client.ApiClient) -> None:
        core = client.CoreV1Api(api)
        for name in NAMESPACES:
            raw(core.create_namespace, {"metadata": {"name": name}})
        namespace, account = POD_SERVICE_ACCOUNT
        raw(core.create_namespaced_service_account, namespace, {"metadata": {"name": account}})
        for node in FAKE_NODES:
            raw(core.create_node, node.manifest())

    def _register_metrics(self, api: client.ApiClient) -> None:
        """The metrics API's Service and APIService, once it listens (the aggregator then finds it up)."""
        service, api_service = metrics_api.registration(self.ports.metrics_api, self.pki.ca_cert.read_bytes())
        raw(client.CoreV1Api(api).create_namespaced_service, service["metadata"]["namespace"], service)
        raw(client.ApiregistrationV1Api(api).create_api_service, api_service)

    def _kubeconfig_path(self, who: str) -> Path:
        return self.kubeconfig if who == "admin" else self.workdir / f"{who}.kubeconfig"

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        self.timings[step] = round(time.monotonic() - began, 2)

    def _wait(self, what: str, ready: Callable[[], bool], deadline: float) -> None:
        while True:
            self.check_alive()
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, client.ApiException):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what}; logs:\n{self.logs_tail()}")
            time.sleep(0.1)

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.ports.etcd_client}/health"
        with _opener().open(url, timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.client_cert("admin")), str(self.pki.client_key("admin")))
        opener = _opener(urllib.request.HTTPSHandler(context=context))
        with opener.open(f"{self.url}/readyz", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")


def _opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """urllib without proxies: everything here is on loopback."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)


def _component_env() -> dict[str, str]:
    """The caller's environment without what would point a component elsewhere (etcd reads ETCD_*)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("ETCD_", "KUBECONFIG"))}


def raw(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a method of the official client with plain dicts in and the parsed JSON out (no models)."""
    response = call(*args, _preload_content=False, **kwargs)
    return json.loads(response.data) if response.data else None


def _nodes_ready(api: client.ApiClient, nodes: tuple[FakeNode, ...]) -> bool:
    listed = raw(client.CoreV1Api(api).list_node, label_selector="type=kwok")
    items = {item["metadata"]["name"]: item for item in listed["items"]}
    return all(node.name in items and _node_ready(items[node.name]) for node in nodes)


def _node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = (node.get("spec") or {}).get("taints") or []
    return ready and not any(t.get("key") in NOT_READY_TAINTS for t in taints)


def _default_account(api: client.ApiClient) -> bool:
    accounts = raw(client.CoreV1Api(api).list_namespaced_service_account, "default")
    return any(item["metadata"]["name"] == "default" for item in accounts["items"])


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _metrics_available(api: client.ApiClient) -> bool:
    name = f"{metrics_api.VERSION}.{metrics_api.GROUP}"
    found = raw(client.ApiregistrationV1Api(api).read_api_service, name)
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def _died(child: Child) -> str:
    code = child.exit_code()
    return f"{child.name} (pid {child.pid}) exited with code {code}; end of {child.log}:\n{child.tail()}"
