"""Bodies shared by the sandbox API server tests."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiException

NS = "gco-inference"


def deployment(
    name: str = "llm",
    replicas: int | None = 2,
    image: str = "vllm/vllm-openai:v0.6",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = labels or {"app": name, "project": "gco", "gco.io/type": "inference"}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": image,
                        "ports": [{"containerPort": 8000}],
                        "env": [{"name": "MODEL", "value": "m"}],
                    }
                ]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def service(name: str = "llm", port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": 8000}]},
    }


def ingress(name: str = "inference-llm") -> dict[str, Any]:
    path = {
        "path": "/inference/llm",
        "pathType": "Prefix",
        "backend": {"service": {"name": "llm", "port": {"number": 80}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [path]}}]},
    }


def hpa(name: str = "llm") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 4,
        },
    }


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body
