"""The Deployment of a workload (primary or canary): pod spec, inference container, server arguments, probes,
tolerations, node selection and the S3 model sync.

Where it stands in the flow: inside step 2 (render), called by ``rendering.render``. More in
docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from gco_tasks.core import conventions as names
from gco_tasks.core.records import EndpointSpec, Toleration
from gco_tasks.core.rendering import lockdown
from gco_tasks.core.rendering.resources import ACCELERATOR_RESOURCE, container_resources
from gco_tasks.core.rendering.workload import Obj, RenderOptions, Workload, metadata, pod_labels

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


def deployment(spec: EndpointSpec, workload: Workload, options: RenderOptions) -> Obj:
    deployment_spec: Obj = {
        "selector": {"matchLabels": {names.APP_LABEL: workload.name}},
        "template": {
            "metadata": {"labels": pod_labels(workload)},
            "spec": _pod_spec(spec, workload, options),
        },
    }
    if workload.replicas is not None:
        deployment_spec = {"replicas": workload.replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(workload.name, workload),
        "spec": deployment_spec,
    }


def _pod_spec(spec: EndpointSpec, workload: Workload, options: RenderOptions) -> Obj:
    pod: Obj = {
        "serviceAccountName": options.service_account,
        **lockdown.pod_fields(spec, options.pod_lockdown),
        "containers": [_inference_container(spec, workload, options)],
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


def _inference_container(spec: EndpointSpec, workload: Workload, options: RenderOptions) -> Obj:
    args = _server_args(spec, workload)
    health_path = probe_path(spec, workload)
    container: Obj = {
        "name": "inference",
        "image": workload.image,
        "ports": [{"containerPort": spec.port, "protocol": "TCP"}],
        "resources": container_resources(spec, workload.endpoint),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if args:
        container["args"] = args
    if spec.env:
        container["env"] = [{"name": key, "value": value} for key, value in spec.env.items()]
    if _uses_model_storage(spec):
        container["volumeMounts"] = _model_reads(workload.endpoint, options)
    container["livenessProbe"] = _probe(health_path, spec.port, initial_delay=120, period=15, failures=5)
    container["readinessProbe"] = _probe(health_path, spec.port, initial_delay=30, period=10)
    security = lockdown.container_context(spec, options.pod_lockdown)
    if security is not None:
        container["securityContext"] = security
    return container


def _server_args(spec: EndpointSpec, workload: Workload) -> list[str] | None:
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


def probe_path(spec: EndpointSpec, workload: Workload) -> str:
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


def _model_dir_mount(directory: str, *, read_only: bool) -> Obj:
    """``/models/{directory}`` of the shared volume, and nothing above it (a ``subPath`` mount)."""
    mount: Obj = {"name": MODEL_VOLUME, "mountPath": f"{MODELS_MOUNT}/{directory}", "subPath": directory}
    if read_only:
        mount["readOnly"] = True
    return mount


def _model_reads(endpoint: str, options: RenderOptions) -> list[Obj]:
    """What the inference container sees of the shared model volume, read-only always (GCO mounted it
    read-write: any endpoint could replace another's model). ``MODEL_READ_SCOPE=share``: the whole
    share at ``/models``; ``endpoint``: its own ``/models/{endpoint}`` and the operator's
    ``MODEL_SHARED_DIRS``, each at its own path under ``/models``."""
    if options.model_read_scope == "share":
        return [{"name": MODEL_VOLUME, "mountPath": MODELS_MOUNT, "readOnly": True}]
    directories = [endpoint, *(d for d in options.model_shared_dirs if d != endpoint)]
    return [_model_dir_mount(directory, read_only=True) for directory in directories]


def _model_sync_container(spec: EndpointSpec, workload: Workload, options: RenderOptions) -> Obj | None:
    """``aws s3 sync SOURCE /models/{endpoint}`` before the server starts, for an ``s3://`` source.

    An argv list, never a shell: the source is one argument whatever it contains. GCO's shell script
    skipped the sync when the directory was not empty; ``aws s3 sync`` already copies only what differs,
    so a warm cache costs a listing, and a changed model is picked up instead of silently skipped.
    The canary syncs into the endpoint's directory too: it runs the same args, so reads the same path.
    It mounts only that directory (``subPath``): it can write nowhere else on the share.
    """
    source = spec.model_source
    if not source or not source.startswith("s3://"):
        return None
    destination = f"{MODELS_MOUNT}/{workload.endpoint}"
    return {
        "name": "model-sync",
        "image": options.model_sync_image,
        "command": ["aws", "s3", "sync", source, destination, "--only-show-errors"],
        "volumeMounts": [_model_dir_mount(workload.endpoint, read_only=False)],
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "4", "memory": "8Gi"},
        },
        **lockdown.model_sync_fields(spec, options.pod_lockdown),
    }
