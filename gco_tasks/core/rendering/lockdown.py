"""The security fields of an inference pod: no API token, no privilege escalation, no capabilities, the
runtime's default seccomp profile, and a non-root user where the record says its image allows it.

Where it stands in the flow: inside step 2 (render), called by ``rendering.deployment`` for the pod spec,
the inference container and the model-sync init container. More in docs/architecture.md.
"""

from __future__ import annotations

from typing import Final

from gco_tasks.core.records import EndpointSpec
from gco_tasks.core.rendering.workload import Obj

#: The model-sync init container's user and group: the conventional unprivileged "nonroot" id.
MODEL_SYNC_UID: Final = 65532
MODEL_SYNC_HOME: Final = "/tmp"


def locked_down(spec: EndpointSpec, lockdown: bool) -> bool:
    """Whether this record's pods get the security fields: the region's setting, or the record's opt-in."""
    return lockdown or spec.non_root


def pod_fields(spec: EndpointSpec, lockdown: bool) -> Obj:
    """``automountServiceAccountToken`` and the pod ``securityContext``, to merge into the pod spec."""
    if not locked_down(spec, lockdown):
        return {}
    context: Obj = {}
    if spec.non_root:
        context["runAsNonRoot"] = True
        if spec.run_as_user is not None:
            context["runAsUser"] = spec.run_as_user
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return {"automountServiceAccountToken": False, "securityContext": context}


def container_context(spec: EndpointSpec, lockdown: bool) -> Obj | None:
    """The inference container's ``securityContext`` (the user comes from the pod's)."""
    return _unprivileged() if locked_down(spec, lockdown) else None


def model_sync_fields(spec: EndpointSpec, lockdown: bool) -> Obj:
    """``env`` and ``securityContext`` of the model-sync init container, to merge into it."""
    if not locked_down(spec, lockdown):
        return {}
    user: Obj = {"runAsNonRoot": True, "runAsUser": MODEL_SYNC_UID, "runAsGroup": MODEL_SYNC_UID}
    return {
        "env": [{"name": "HOME", "value": MODEL_SYNC_HOME}],
        "securityContext": {**_unprivileged(), **user},
    }


def _unprivileged() -> Obj:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
