"""The HorizontalPodAutoscaler of an endpoint with autoscaling on (autoscaling/v2).

Where it stands in the flow: inside step 2 (render), called by ``rendering.render``. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from gco_tasks.core.records import AutoscalingMetric, EndpointSpec
from gco_tasks.core.rendering.workload import Obj, Workload, metadata

HPA_METRICS = ("cpu", "memory")
DEFAULT_HPA_TARGET = 70


def hpa(spec: EndpointSpec, primary: Workload) -> Obj:
    autoscaling = spec.autoscaling
    assert autoscaling is not None  # only rendered when enabled
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(primary.name, primary),
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
