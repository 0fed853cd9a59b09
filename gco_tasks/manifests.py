"""Rendering: one endpoint record and one region in, the exact Kubernetes objects that should exist out.

Where it stands in the flow: step 2 of ``reconcile_endpoint`` (``desired = render(endpoint, region)``),
between reading the record (``endpoints.Endpoint``) and planning (diff against what the cluster has).
It is also what ``gco-tasks render`` prints. Pure: no I/O, no clock, no randomness; the same record,
region and options always give the same objects, byte for byte, so the fleet can tell "in sync" by
comparing the ``gco.io/desired-hash`` annotation each object carries with the one observed.

Parity with GCO's monitor, object by object (names ``{name}``, ``{name}-canary``, ``inference-{name}``;
labels ``app``, ``project=gco``, ``gco.io/type=inference``), with its defects fixed:

- the canary runs its own image (never the primary's regional image) and is served under the public
  path ``/inference/{name}`` (``--root-path`` and probes), because that is where the ALB sends traffic;
- without a canary the Ingress routes to the primary only, with no weighted-routing annotation left;
- with autoscaling on, the Deployment leaves ``spec.replicas`` to the HPA;
- ``stopped`` is the Deployment at 0 and its Service, nothing behind the shared ALB, no canary, no HPA;
- the model sync runs ``aws s3 sync`` as an argv list (no shell), from a pinned, configurable image;
- the spec's own tolerations are honoured.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gco_tasks.endpoints import DELETED, STOPPED, AutoscalingMetric, Endpoint, EndpointSpec, Toleration
from gco_tasks.manifests_resources import ACCELERATOR_RESOURCE, container_resources

if TYPE_CHECKING:
    from gco_tasks.config import Settings

Obj = dict[str, Any]

HASH_ANNOTATION = "gco.io/desired-hash"
ENDPOINT_LABEL = "gco.io/endpoint"
TYPE_LABEL = "gco.io/type"
CANARY_LABEL = "gco.io/canary"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "gco-tasks"
WEIGHTED_ROUTING_ANNOTATION = "alb.ingress.kubernetes.io/actions.weighted-routing"
HEALTHCHECK_PATH_ANNOTATION = "alb.ingress.kubernetes.io/healthcheck-path"
HEALTHCHECK_INTERVAL_ANNOTATION = "alb.ingress.kubernetes.io/healthcheck-interval-seconds"

SERVICE_PORT = 80
MODELS_MOUNT = "/models"
MODEL_VOLUME = "model-storage"
MODEL_CLAIM = "efs-claim"
ROOT_PATH_FLAG = "--root-path"
# Servers that mount their API under --root-path (vLLM, TGI); matched in the lower-cased image reference.
ROOT_PATH_SERVERS = ("vllm", "text-generation-inference", "tgi")
DEFAULT_NODE_SELECTOR = {
    "nvidia": {"eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"},
    "neuron": {"accelerator": "neuron"},
}
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
HPA_METRICS = ("cpu", "memory")
DEFAULT_HPA_TARGET = 70


@dataclass(frozen=True)
class RenderOptions:
    """What rendering takes from the region's configuration rather than from the record."""

    namespace: str = "gco-inference"  # used when the record names none
    model_sync_image: str = "public.ecr.aws/aws-cli/aws-cli:2.22.35"
    service_account: str = "gco-service-account"

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderOptions:
        return cls(
            namespace=settings.inference_namespace,
            model_sync_image=settings.model_sync_image,
            service_account=settings.inference_service_account,
        )


@dataclass(frozen=True)
class _Workload:
    """One Deployment + Service pair: the primary (``{name}``) or the canary (``{name}-canary``)."""

    endpoint: str  # the endpoint's name, shared by primary and canary
    name: str  # object names and the pods' ``app`` label
    image: str
    replicas: int | None  # None: the HPA owns it
    canary: bool
    namespace: str

    @property
    def public_path(self) -> str:
        """Where the ALB sends this endpoint's traffic (the canary's too): the server's root path."""
        return f"/inference/{self.endpoint}"


# --------------------------------------------------------------------------- public API


def render_endpoint(endpoint: Endpoint, region: str, options: RenderOptions) -> list[Obj]:
    """Every object that should exist in ``region`` for ``endpoint``, in apply order, each carrying its
    ``gco.io/desired-hash``. ``[]`` when the endpoint is deleted or does not target the region.

    Raises ``InvalidEndpointError`` naming the field for the few records the model accepts but Kubernetes
    would not (a request above the limit the user also set, a negative quantity): bad input is data."""
    if endpoint.desired_state == DELETED or not endpoint.targets(region):
        return []
    namespace = endpoint.namespace or options.namespace
    spec = endpoint.spec
    primary = _primary_workload(endpoint, region, namespace)
    if endpoint.desired_state == STOPPED:
        objects = _workload_objects(spec, primary, options)
    else:
        objects = _serving_objects(endpoint, primary, options)
    return [_with_hash(obj) for obj in objects]


def content_hash(obj: Mapping[str, Any]) -> str:
    """sha256 of the object's canonical JSON, leaving out the hash annotation itself (an annotations map
    left empty by that counts as absent), so a rendered object and its hash-less twin hash the same."""
    content = copy.deepcopy(dict(obj))
    metadata = content.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("annotations"), dict):
        annotations = {k: v for k, v in metadata["annotations"].items() if k != HASH_ANNOTATION}
        metadata = {**metadata, "annotations": annotations}
        if not annotations:
            del metadata["annotations"]
        content["metadata"] = metadata
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(kind, name)``: how desired and observed objects of one endpoint are matched up."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


def selector_for_managed() -> str:
    """The label selector that finds every inference object, ours and those GCO's monitor created."""
    return f"{TYPE_LABEL}=inference"


# --------------------------------------------------------------------------- object sets


def _primary_workload(endpoint: Endpoint, region: str, namespace: str) -> _Workload:
    spec = endpoint.spec
    if endpoint.desired_state == STOPPED:
        replicas: int | None = 0
    elif _autoscaling_enabled(spec):
        replicas = None
    else:
        replicas = spec.replicas
    return _Workload(
        endpoint=endpoint.endpoint_name,
        name=endpoint.endpoint_name,
        image=spec.image_for_region(region),
        replicas=replicas,
        canary=False,
        namespace=namespace,
    )


def _canary_workload(endpoint: Endpoint, namespace: str) -> _Workload | None:
    canary = endpoint.spec.canary
    if canary is None:
        return None
    return _Workload(
        endpoint=endpoint.endpoint_name,
        name=f"{endpoint.endpoint_name}-canary",
        image=canary.image,  # its own image in every region: region_image_uris are the primary's
        replicas=canary.replicas,
        canary=True,
        namespace=namespace,
    )


def _serving_objects(endpoint: Endpoint, primary: _Workload, options: RenderOptions) -> list[Obj]:
    spec = endpoint.spec
    objects = _workload_objects(spec, primary, options)
    if _autoscaling_enabled(spec):
        objects.append(_hpa(spec, primary))
    canary = _canary_workload(endpoint, primary.namespace)
    if canary is not None:
        objects.extend(_workload_objects(spec, canary, options))
    objects.append(_ingress(endpoint, primary, canary))
    return objects


def _workload_objects(spec: EndpointSpec, workload: _Workload, options: RenderOptions) -> list[Obj]:
    return [_deployment(spec, workload, options), _service(spec, workload)]


# --------------------------------------------------------------------------- metadata


def _labels(workload: _Workload) -> dict[str, str]:
    labels = {
        "app": workload.name,
        "project": "gco",
        TYPE_LABEL: "inference",
        ENDPOINT_LABEL: workload.endpoint,
        MANAGED_BY_LABEL: MANAGER,
    }
    if workload.canary:
        labels[CANARY_LABEL] = "true"
    return labels


def _metadata(name: str, workload: _Workload, annotations: Mapping[str, str] | None = None) -> Obj:
    return {
        "name": name,
        "namespace": workload.namespace,
        "labels": _labels(workload),
        "annotations": dict(annotations or {}),
    }


def _with_hash(obj: Obj) -> Obj:
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = content_hash(obj)
    return obj


# --------------------------------------------------------------------------- Deployment


def _deployment(spec: EndpointSpec, workload: _Workload, options: RenderOptions) -> Obj:
    deployment_spec: Obj = {
        "selector": {"matchLabels": {"app": workload.name}},
        "template": {
            "metadata": {"labels": _labels(workload)},
            "spec": _pod_spec(spec, workload, options),
        },
    }
    if workload.replicas is not None:
        deployment_spec = {"replicas": workload.replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(workload.name, workload),
        "spec": deployment_spec,
    }


def _pod_spec(spec: EndpointSpec, workload: _Workload, options: RenderOptions) -> Obj:
    pod: Obj = {
        "serviceAccountName": options.service_account,
        "containers": [_inference_container(spec, workload)],
        "tolerations": _tolerations(spec),
    }
    sync = _model_sync_container(spec, workload, options)
    if sync is not None:
        pod["initContainers"] = [sync]
    node_selector = _node_selector(spec)
    if node_selector:
        pod["nodeSelector"] = node_selector
    if _uses_model_storage(spec):
        pod["volumes"] = [{"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": MODEL_CLAIM}}]
    return pod


def _inference_container(spec: EndpointSpec, workload: _Workload) -> Obj:
    args = _server_args(spec, workload)
    probe_path = _probe_path(spec, workload)
    container: Obj = {
        "name": "inference",
        "image": workload.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "resources": container_resources(spec, workload.endpoint),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if args:
        container["args"] = args
    if spec.env:
        container["env"] = [{"name": key, "value": spec.env[key]} for key in sorted(spec.env)]
    if _uses_model_storage(spec):
        container["volumeMounts"] = [{"name": MODEL_VOLUME, "mountPath": MODELS_MOUNT}]
    container["livenessProbe"] = _probe(probe_path, spec.port, initial_delay=120, period=15, failures=5)
    container["readinessProbe"] = _probe(probe_path, spec.port, initial_delay=30, period=10)
    return container


def _server_args(spec: EndpointSpec, workload: _Workload) -> list[str] | None:
    """The container args: the spec's, plus ``--root-path /inference/{name}`` for servers that take it
    (vLLM, TGI) unless the spec gives a command or already sets a root path."""
    args = list(spec.args) if spec.args else None
    if spec.command or not _serves_root_path(workload.image):
        return args
    if args is None:
        return [ROOT_PATH_FLAG, workload.public_path]
    if _has_root_path(args):
        return args
    return [*args, ROOT_PATH_FLAG, workload.public_path]


def _serves_root_path(image: str) -> bool:
    lowered = image.lower()
    return any(server in lowered for server in ROOT_PATH_SERVERS)


def _has_root_path(args: Iterable[str]) -> bool:
    return any(arg == ROOT_PATH_FLAG or arg.startswith(f"{ROOT_PATH_FLAG}=") for arg in args)


def _probe_path(spec: EndpointSpec, workload: _Workload) -> str:
    """The health path as the server serves it: under the public path when it runs with a root path."""
    health = spec.health_check_path  # the model guarantees a leading '/'
    args = _server_args(spec, workload) or []
    return f"{workload.public_path}{health}" if _has_root_path(args) else health


def _probe(path: str, port: int, *, initial_delay: int, period: int, failures: int | None = None) -> Obj:
    probe: Obj = {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": initial_delay}
    probe["periodSeconds"] = period
    if failures is not None:
        probe["failureThreshold"] = failures
    return probe


def _tolerations(spec: EndpointSpec) -> list[Obj]:
    """The accelerator's taint toleration (always, as GCO does) followed by the spec's own."""
    device = ACCELERATOR_RESOURCE[spec.accelerator]
    tolerations: list[Obj] = [{"key": device, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    for toleration in spec.tolerations or []:
        rendered = _toleration(toleration)
        if rendered not in tolerations:
            tolerations.append(rendered)
    return tolerations


def _toleration(toleration: Toleration) -> Obj:
    fields = {
        "key": toleration.key,
        "operator": toleration.operator,
        "value": toleration.value,
        "effect": toleration.effect,
        "tolerationSeconds": toleration.tolerationSeconds,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _node_selector(spec: EndpointSpec) -> dict[str, str]:
    """The spec's node selector, else the accelerator's default when devices are requested; plus
    Karpenter's capacity type when the spec asks for one."""
    selector = dict(spec.node_selector or {})
    if not selector and spec.gpu_count > 0:
        selector = dict(DEFAULT_NODE_SELECTOR[spec.accelerator])
    if spec.capacity_type in ("spot", "on-demand"):
        selector[CAPACITY_TYPE_LABEL] = spec.capacity_type
    return selector


# --------------------------------------------------------------------------- model storage


def _uses_model_storage(spec: EndpointSpec) -> bool:
    return bool(spec.model_path or spec.model_source)


def _model_sync_container(spec: EndpointSpec, workload: _Workload, options: RenderOptions) -> Obj | None:
    """``aws s3 sync SOURCE /models/{endpoint}`` before the server starts, for an ``s3://`` source.

    An argv list, never a shell: the source is one argument whatever it contains. GCO's shell script
    skipped the sync when the directory was not empty; ``aws s3 sync`` already copies only what differs,
    so a warm cache costs a listing, and a changed model is picked up instead of silently skipped.
    The canary syncs into the endpoint's directory too: it runs the same args, so reads the same path.
    """
    source = spec.model_source
    if not source or not source.startswith("s3://"):
        return None
    destination = f"{MODELS_MOUNT}/{workload.endpoint}"
    return {
        "name": "model-sync",
        "image": options.model_sync_image,
        "command": ["aws", "s3", "sync", source, destination, "--only-show-errors"],
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODELS_MOUNT}],
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "4", "memory": "8Gi"},
        },
    }


# --------------------------------------------------------------------------- Service, Ingress, HPA


def _service(spec: EndpointSpec, workload: _Workload) -> Obj:
    """ClusterIP port 80 to the container port. The health-check annotation makes the ALB check each
    target group (primary, canary) at the path its own pods serve."""
    annotations = {HEALTHCHECK_PATH_ANNOTATION: _probe_path(spec, workload)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(workload.name, workload, annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": workload.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": spec.port, "protocol": "TCP"}],
        },
    }


def _ingress(endpoint: Endpoint, primary: _Workload, canary: _Workload | None) -> Obj:
    """``inference-{name}`` on the shared ALB: to the primary Service, or, with a canary, to the ALB's
    weighted forward action splitting between the two Services."""
    annotations = {
        HEALTHCHECK_PATH_ANNOTATION: _probe_path(endpoint.spec, primary),
        HEALTHCHECK_INTERVAL_ANNOTATION: "15",
    }
    backend: Obj = {"service": {"name": primary.name, "port": {"number": SERVICE_PORT}}}
    if canary is not None:
        annotations[WEIGHTED_ROUTING_ANNOTATION] = _weighted_routing(endpoint, primary, canary)
        backend = {"service": {"name": "weighted-routing", "port": {"name": "use-annotation"}}}
    path = endpoint.ingress_path or primary.public_path
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(f"inference-{primary.name}", primary, annotations),
        "spec": {
            "ingressClassName": "alb",
            "rules": [{"http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def _weighted_routing(endpoint: Endpoint, primary: _Workload, canary: _Workload) -> str:
    weight = endpoint.spec.canary.weight if endpoint.spec.canary is not None else 0
    action = {
        "type": "forward",
        "forwardConfig": {
            "targetGroups": [
                {"serviceName": primary.name, "servicePort": SERVICE_PORT, "weight": 100 - weight},
                {"serviceName": canary.name, "servicePort": SERVICE_PORT, "weight": weight},
            ]
        },
    }
    return json.dumps(action, separators=(",", ":"))


def _autoscaling_enabled(spec: EndpointSpec) -> bool:
    return spec.autoscaling is not None and spec.autoscaling.enabled


def _hpa(spec: EndpointSpec, primary: _Workload) -> Obj:
    autoscaling = spec.autoscaling
    assert autoscaling is not None  # only rendered when enabled
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(primary.name, primary),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": primary.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": _hpa_metrics(autoscaling.metrics),
        },
    }


def _hpa_metrics(metrics: Iterable[AutoscalingMetric]) -> list[Obj]:
    """cpu/memory utilisation targets in the spec's order, the first of each type winning; none means
    cpu at 70 % (as GCO does). The model only admits cpu and memory."""
    rendered: list[Obj] = []
    for metric in metrics:
        if metric.type in HPA_METRICS and not any(m["resource"]["name"] == metric.type for m in rendered):
            rendered.append(_utilisation(metric.type, metric.target))
    return rendered or [_utilisation("cpu", DEFAULT_HPA_TARGET)]


def _utilisation(resource: str, target: int) -> Obj:
    return {
        "type": "Resource",
        "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": target}},
    }
