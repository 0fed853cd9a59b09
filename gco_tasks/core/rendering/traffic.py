"""The Service of each workload and the endpoint's Ingress on the shared ALB (weighted to the canary when
there is one).

Where it stands in the flow: inside step 2 (render), called by ``rendering.render``. Pure.
"""

from __future__ import annotations

import json

from gco_tasks.core import conventions as names
from gco_tasks.core.records import Endpoint, EndpointSpec
from gco_tasks.core.rendering.deployment import probe_path
from gco_tasks.core.rendering.workload import Obj, Workload, metadata

SERVICE_PORT = 80


def service(spec: EndpointSpec, workload: Workload) -> Obj:
    """ClusterIP port 80 to the container port. The health-check annotation makes the ALB check each
    target group (primary, canary) at the path its own pods serve."""
    annotations = {names.HEALTHCHECK_PATH_ANNOTATION: probe_path(spec, workload)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(workload.name, workload, annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": {names.APP_LABEL: workload.name},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": spec.port, "protocol": "TCP"}],
        },
    }


def ingress(endpoint: Endpoint, primary: Workload, canary: Workload | None) -> Obj:
    """``inference-{name}`` on the shared ALB: to the primary Service, or, with a canary, to the ALB's
    weighted forward action splitting between the two Services."""
    annotations = {
        names.HEALTHCHECK_PATH_ANNOTATION: probe_path(endpoint.spec, primary),
        names.HEALTHCHECK_INTERVAL_ANNOTATION: "15",
    }
    backend: Obj = {"service": {"name": primary.name, "port": {"number": SERVICE_PORT}}}
    if canary is not None:
        annotations[names.WEIGHTED_ROUTING_ANNOTATION] = _weighted_routing(endpoint, primary, canary)
        backend = {"service": {"name": names.WEIGHTED_ROUTING_BACKEND, "port": {"name": "use-annotation"}}}
    path = endpoint.ingress_path or primary.public_path
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(names.ingress_name(primary.endpoint), primary, annotations),
        "spec": {
            "ingressClassName": "alb",
            "rules": [{"http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def _weighted_routing(endpoint: Endpoint, primary: Workload, canary: Workload) -> str:
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
