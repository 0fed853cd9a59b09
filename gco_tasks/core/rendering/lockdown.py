"""The security fields of an inference pod: no API token, no privilege escalation, no capabilities,
the runtime's default seccomp profile, and a non-root user where the record says its image allows it.

Where it stands in the flow: inside step 2 (render), called by ``rendering.deployment`` for the pod spec,
the inference container and the model-sync init container. Pure.

Inference pods run images chosen by table records, so by default (``INFERENCE_POD_LOCKDOWN=true``):

- ``automountServiceAccountToken: false``: the pod gets no Kubernetes API token (IRSA is unaffected:
  EKS's pod identity webhook mounts its own projected token for the AWS role);
- pod ``seccompProfile: RuntimeDefault``; each container ``allowPrivilegeEscalation: false`` and
  ``capabilities.drop: [ALL]`` (GPU and Neuron devices need neither: the device plugin hands them over);
- non-root only when the record opts in (``spec.run_as_non_root``, ``spec.run_as_user``): vLLM, TGI and
  Triton images commonly run as root, so forcing it would stop them at start. Such a pod passes Pod
  Security ``baseline``; one that opts in passes ``restricted``;
- the model-sync init container (aws-cli, which runs as root by default) always runs as uid/gid 65532,
  with ``HOME=/tmp``: the CLI writes its credential cache under ``$HOME/.aws`` and fails on an unwritable
  home (``/`` for a uid the image does not know).

``INFERENCE_POD_LOCKDOWN=false`` leaves the pod template as GCO's monitor wrote it (none of these fields),
so a cut-over from GCO restarts no pod for their sake; switching it on later rolls every endpoint's pods
once. A record that opts in to non-root gets every field whatever the setting: it asked for
``restricted``, which needs them all.
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
