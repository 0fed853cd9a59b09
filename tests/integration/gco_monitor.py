"""A region's objects as GCO's ``inference-monitor`` (GCO v2.0.0, ``/work/shared/seed``) creates them, for
the cut-over tests: the same shapes, through the same calls (the Python client's ``create_namespaced_*``
and ``patch_namespaced_*`` without a field manager, so kube-apiserver records them as ``Update``s of
``OpenAPI-Generator``, the client's User-Agent), with the monitor's own quirks: env vars in the record's
order with ``str()`` values, an unnamed container port, ``replicas`` set even under an HPA, the S3 model
sync as a shell script in ``amazon/aws-cli:latest``, the canary's root path and probes under
``/inference/{name}-canary``, the canary Ingress patched in with its weighted-routing annotation and
``gco.io/canary`` label, and a rollback that deletes the canary's objects but leaves that Ingress.

Written from the monitor's documented behaviour (not its code); only what the tests need.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

NAMESPACE = "gco-inference"
ROOT_PATH_IMAGES = ("vllm", "text-generation-inference", "tgi")
GCO_LABELS = {"project": "gco", "gco.io/type": "inference"}


def labels(app: str) -> dict[str, str]:
    return {"app": app, **GCO_LABELS}


def uses_root_path(image: str) -> bool:
    return any(tag in image.lower() for tag in ROOT_PATH_IMAGES)


def deployment(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``_create_deployment``: the primary's (or, with the canary's spec, the canary's) Deployment."""
    image, port = spec["image"], spec.get("port", 8000)
    gpu_count, accelerator = spec.get("gpu_count", 1), spec.get("accelerator", "nvidia")
    args, command = spec.get("args"), spec.get("command")
    prefix = f"/inference/{name}"  # the canary's own name: GCO's defect 3
    if not command and uses_root_path(image):
        args = [*args, "--root-path", prefix] if args and "--root-path" not in args else args
        args = args or ["--root-path", prefix]
    health = spec.get("health_check_path", "/health")
    probe_path = f"{prefix}{health}" if args and "--root-path" in args else health
    resources = spec.get("resources", {})
    requests = dict(resources.get("requests", {"cpu": "1", "memory": "4Gi"}))
    limits = dict(resources.get("limits", {"cpu": "4", "memory": "16Gi"}))
    device = "aws.amazon.com/neuron" if accelerator == "neuron" else "nvidia.com/gpu"
    if gpu_count > 0:
        requests[device] = limits[device] = str(gpu_count)
    container: dict[str, Any] = {
        "name": "inference",
        "image": image,
        "ports": [{"containerPort": port}],
        "resources": {"requests": requests, "limits": limits},
        "livenessProbe": probe(probe_path, port, 120, 15, failure_threshold=5),
        "readinessProbe": probe(probe_path, port, 30, 10),
    }
    if spec.get("env"):
        container["env"] = [{"name": k, "value": str(v)} for k, v in spec["env"].items()]
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    pod: dict[str, Any] = {
        "serviceAccountName": "gco-service-account",
        "containers": [container],
        "tolerations": [{"key": device, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }
    model_storage(pod, container, name, spec)
    selector = dict(spec.get("node_selector") or {})
    if gpu_count > 0 and not selector:
        selector = (
            {"accelerator": "neuron"}
            if accelerator == "neuron"
            else {"eks.amazonaws.com/instance-gpu-manufacturer": "nvidia"}
        )
    if spec.get("capacity_type") in ("spot", "on-demand"):
        selector["karpenter.sh/capacity-type"] = spec["capacity_type"]
    if selector:
        pod["nodeSelector"] = selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "replicas": spec.get("replicas", 1),
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels(name)}, "spec": pod},
        },
    }


def probe(
    path: str, port: int, delay: int, period: int, failure_threshold: int | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
    }
    if failure_threshold is not None:
        found["failureThreshold"] = failure_threshold
    return found


def model_storage(pod: dict[str, Any], container: dict[str, Any], name: str, spec: dict[str, Any]) -> None:
    source = spec.get("model_source")
    if not (spec.get("model_path") or source):
        return
    mount = {"name": "model-storage", "mountPath": "/models"}
    container["volumeMounts"] = [mount]
    pod["volumes"] = [{"name": "model-storage", "persistentVolumeClaim": {"claimName": "efs-claim"}}]
    if source and source.startswith("s3://"):
        dest = f"/models/{name}"
        script = (
            f"if [ -d '{dest}' ] && [ \"$(ls -A '{dest}')\" ]; then echo 'Model already cached at {dest}, "
            f"skipping sync'; else echo 'Syncing model from {source}...'; aws s3 sync {source} {dest} "
            "--quiet; echo 'Model sync complete'; fi"
        )
        pod["initContainers"] = [
            {
                "name": "model-sync",
                "image": "amazon/aws-cli:latest",
                "command": ["sh", "-c"],
                "args": [script],
                "volumeMounts": [mount],
                "resources": {
                    "requests": {"cpu": "1", "memory": "2Gi"},
                    "limits": {"cpu": "4", "memory": "8Gi"},
                },
            }
        ]


def service(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "selector": {"app": name},
            "ports": [{"port": 80, "targetPort": spec.get("port", 8000), "protocol": "TCP"}],
            "type": "ClusterIP",
        },
    }


def health_path(name: str, spec: dict[str, Any]) -> str:
    health = spec.get("health_check_path", "/health")
    return f"/inference/{name}{health}" if uses_root_path(spec.get("image", "")) else health


def ingress(name: str, spec: dict[str, Any], canary_weight: int | None = None) -> dict[str, Any]:
    """``_update_ingress_rule``, or with a weight ``_update_canary_ingress``."""
    annotations = {
        "alb.ingress.kubernetes.io/healthcheck-path": health_path(name, spec),
        "alb.ingress.kubernetes.io/healthcheck-interval-seconds": "15",
    }
    found_labels = labels(name)
    backend: dict[str, Any] = {"service": {"name": name, "port": {"number": 80}}}
    if canary_weight is not None:
        groups = [
            {"serviceName": name, "servicePort": 80, "weight": 100 - canary_weight},
            {"serviceName": f"{name}-canary", "servicePort": 80, "weight": canary_weight},
        ]
        annotations["alb.ingress.kubernetes.io/actions.weighted-routing"] = json.dumps(
            {"type": "forward", "forwardConfig": {"targetGroups": groups}}
        )
        found_labels["gco.io/canary"] = "true"
        backend = {"service": {"name": "weighted-routing", "port": {"name": "use-annotation"}}}
    path = {"path": f"/inference/{name}", "pathType": "Prefix", "backend": backend}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": f"inference-{name}",
            "namespace": NAMESPACE,
            "labels": found_labels,
            "annotations": annotations,
        },
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [path]}}]},
    }


def hpa(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    autoscaling = spec["autoscaling"]
    metrics = [
        {"type": "Resource", "resource": {"name": m["type"], "target": utilisation(m["target"])}}
        for m in autoscaling.get("metrics", [{"type": "cpu", "target": 70}])
        if m["type"] in ("cpu", "memory")
    ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.get("min_replicas", 1),
            "maxReplicas": autoscaling.get("max_replicas", 10),
            "metrics": metrics,
        },
    }


def utilisation(target: int) -> dict[str, Any]:
    return {"type": "Utilization", "averageUtilization": target}


class Monitor:
    """GCO's monitor's writes to one region, through the Python client with its default field manager."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    def create(self, name: str, spec: dict[str, Any]) -> None:
        """``_reconcile_running`` for a new endpoint, then ``_reconcile_canary`` when it has one."""
        self.apps.create_namespaced_deployment(NAMESPACE, deployment(name, spec))
        self.core.create_namespaced_service(NAMESPACE, service(name, spec))
        self.networking.create_namespaced_ingress(NAMESPACE, ingress(name, spec))
        if (spec.get("autoscaling") or {}).get("enabled"):
            self.autoscaling.create_namespaced_horizontal_pod_autoscaler(NAMESPACE, hpa(name, spec))
        canary = spec.get("canary")
        if canary:
            canary_spec = {**spec, "image": canary["image"], "replicas": canary.get("replicas", 1)}
            canary_spec.pop("canary")
            self.apps.create_namespaced_deployment(NAMESPACE, deployment(f"{name}-canary", canary_spec))
            self.core.create_namespaced_service(NAMESPACE, service(f"{name}-canary", canary_spec))
            weighted = ingress(name, spec, canary.get("weight", 10))
            self.networking.patch_namespaced_ingress(f"inference-{name}", NAMESPACE, weighted)

    def clean_up_canary(self, name: str) -> None:
        """``_cleanup_canary`` after a rollback: the canary's objects go, its Ingress routing stays."""
        self.apps.delete_namespaced_deployment(f"{name}-canary", NAMESPACE)
        self.core.delete_namespaced_service(f"{name}-canary", NAMESPACE)
