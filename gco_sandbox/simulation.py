"""Deployment readiness simulation for the sandbox API server: what a Deployment's ``status`` becomes
once its pods "start". Pure; the store decides when to call it.

Where it stands in the flow: the fleet reads readiness back (step 6 reports it to DynamoDB; the watchdog
pulls the Ingress of endpoints at 0 ready replicas). There are no pods in the sandbox API server (a LOCAL
STAND-IN, not Kubernetes), so after a delay the status simply follows the spec: ``replicas``,
``readyReplicas``, ``availableReplicas`` and ``updatedReplicas`` equal ``spec.replicas`` and
``observedGeneration`` equals ``generation``; an image matching the crash-loop pattern never becomes
ready. Zero counts are omitted, as Kubernetes omits them.
"""

from __future__ import annotations

from typing import Any


def images(deployment: dict[str, Any]) -> list[str]:
    pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    return [str(c.get("image", "")) for c in containers if isinstance(c, dict)]


def _condition(kind: str, ok: bool, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }


def settled_status(deployment: dict[str, Any], crashloop_pattern: str, now: str) -> dict[str, Any]:
    """The status of ``deployment`` once the simulated rollout is over."""
    wanted = int(deployment.get("spec", {}).get("replicas", 1) or 0)
    crashing = bool(crashloop_pattern) and any(crashloop_pattern in image for image in images(deployment))
    ready = 0 if crashing else wanted
    name = deployment["metadata"]["name"]
    counts = {
        "replicas": wanted,
        "updatedReplicas": wanted,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": wanted - ready,
    }
    status: dict[str, Any] = {"observedGeneration": deployment["metadata"].get("generation", 1)}
    status.update({key: value for key, value in counts.items() if value})
    available = ready >= wanted
    status["conditions"] = [
        _condition(
            "Available",
            available,
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
            now,
        ),
        _condition(
            "Progressing",
            not crashing,
            "NewReplicaSetAvailable" if not crashing else "ProgressDeadlineExceeded",
            f'ReplicaSet "{name}" has successfully progressed.'
            if not crashing
            else f'ReplicaSet "{name}" has timed out progressing.',
            now,
        ),
    ]
    return status
