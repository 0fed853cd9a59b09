"""What a record may ask of a region: caps on replicas, GPUs and container resources, and tolerations that
name the taint they tolerate.

Where it stands in the flow: at the start of step 2 (render). More in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from gco_tasks.core.images import image_repository, registry_allowed
from gco_tasks.core.records import Endpoint, EndpointSpec, InvalidEndpointError
from gco_tasks.core.rendering.resources import ACCELERATOR_RESOURCE, container_resources, quantity

DEFAULT_MAX_REPLICAS: Final = 32
#: The largest accelerator node: 8 GPUs (p5/p4d.24xlarge), 16 Neuron devices (trn1.32xlarge).
DEFAULT_MAX_GPUS: Final = 16
#: As the inference namespace's LimitRange maximum (k8s/inference-namespace/limitrange.yaml).
DEFAULT_MAX_CPU: Final = "96"
DEFAULT_MAX_MEMORY: Final = "1Ti"
#: Per endpoint, all replicas (the most it may scale to) and its canary together: half the example
#: ResourceQuota of k8s/inference-namespace (64 devices, 512 cpu requested), so no one record takes it all.
DEFAULT_MAX_GPUS_PER_ENDPOINT: Final = 32
DEFAULT_MAX_CPU_PER_ENDPOINT: Final = "256"

#: The taint keys a record may tolerate by default: the accelerators' (which the fleet tolerates for
#: every pod anyway) and the node conditions' (NoExecute: how long to stay on a failing node). Not the
#: control plane's, ``CriticalAddonsOnly`` or another team's dedicated nodes: the operator lists those.
DEFAULT_ALLOWED_TOLERATION_KEYS: Final = (
    "nvidia.com/gpu",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuroncore",
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
)
#: ``ALLOWED_TOLERATION_KEYS=*``: any keyed taint (keyless ones still need ALLOW_WILDCARD_TOLERATIONS).
ANY_KEY: Final = "*"

Problem = tuple[str, str]  # (field path, message)


@dataclass(frozen=True)
class EndpointPolicy:
    """The caps of one region (each a setting of the same name, upper-cased) and whether tolerations
    without a key are allowed."""

    max_replicas_per_endpoint: int = DEFAULT_MAX_REPLICAS
    max_gpus_per_pod: int = DEFAULT_MAX_GPUS
    max_cpu_per_container: str = DEFAULT_MAX_CPU
    max_memory_per_container: str = DEFAULT_MAX_MEMORY
    allow_wildcard_tolerations: bool = False
    allowed_toleration_keys: tuple[str, ...] = DEFAULT_ALLOWED_TOLERATION_KEYS
    #: ALLOWED_IMAGE_REGISTRIES; empty: any registry (off, the default).
    allowed_image_registries: tuple[str, ...] = ()
    max_gpus_per_endpoint: int = DEFAULT_MAX_GPUS_PER_ENDPOINT
    max_cpu_per_endpoint: str = DEFAULT_MAX_CPU_PER_ENDPOINT


def check_policy(endpoint: Endpoint, policy: EndpointPolicy) -> None:
    """Raise ``InvalidEndpointError`` naming every field of ``endpoint`` the policy refuses."""
    found = policy_problems(endpoint.spec, endpoint.endpoint_name, policy)
    if found:
        raise InvalidEndpointError(found, endpoint.endpoint_name)


def policy_problems(spec: EndpointSpec, name: str, policy: EndpointPolicy) -> list[Problem]:
    """Every ``(field, message)`` of ``spec`` over a cap or tolerating every taint; ``[]`` when none.
    Raises ``InvalidEndpointError`` when the resources themselves are invalid (as rendering would)."""
    return [
        *replica_problems(spec, policy.max_replicas_per_endpoint),
        *toleration_problems(spec, policy.allow_wildcard_tolerations, policy.allowed_toleration_keys),
        *resource_problems(spec, name, policy),
        *total_problems(spec, name, policy),
        *image_problems(spec, policy.allowed_image_registries),
    ]


def image_problems(spec: EndpointSpec, allowed: tuple[str, ...]) -> list[Problem]:
    """Images (primary, per region, canary) from a registry not in ``allowed``; none when it is empty."""
    if not allowed:
        return []
    images = [("spec.image", spec.image)]
    images += [
        (f"spec.region_image_uris.{region}", image) for region, image in spec.region_image_uris.items()
    ]
    if spec.canary is not None:
        images.append(("spec.canary.image", spec.canary.image))
    return [
        (
            path,
            f"{image_repository(image)} is not from a registry this region allows "
            f"(ALLOWED_IMAGE_REGISTRIES: {', '.join(allowed)}); push the image there, or have the "
            "operator add its registry",
        )
        for path, image in images
        if not registry_allowed(image, allowed)
    ]


def replica_problems(spec: EndpointSpec, cap: int) -> list[Problem]:
    """Replicas anywhere in the record (primary, autoscaling maximum, canary) above ``cap``. Checked
    whether or not autoscaling is on now: switching it is one field away."""
    asked = [("spec.replicas", spec.replicas)]
    if spec.autoscaling is not None:
        asked.append(("spec.autoscaling.max_replicas", spec.autoscaling.max_replicas))
    if spec.canary is not None:
        asked.append(("spec.canary.replicas", spec.canary.replicas))
    return [
        (path, _over(str(count), f"{cap} replicas", "MAX_REPLICAS_PER_ENDPOINT", str(cap)))
        for path, count in asked
        if count > cap
    ]


def toleration_problems(
    spec: EndpointSpec,
    allow_wildcard: bool,
    allowed_keys: tuple[str, ...] = DEFAULT_ALLOWED_TOLERATION_KEYS,
) -> list[Problem]:
    """Tolerations without a key (operator ``Exists``) tolerate every taint, the control plane's and
    other dedicated nodes' too: refused unless ALLOW_WILDCARD_TOLERATIONS is on. A keyed toleration must
    name a key of ALLOWED_TOLERATION_KEYS (``*``: any key), so a record cannot put its pods on nodes
    tainted for the control plane, system add-ons or another team."""
    found = []
    for index, toleration in enumerate(spec.tolerations or []):
        path = f"spec.tolerations[{index}]"
        if not toleration.key and not allow_wildcard:
            found.append(
                (
                    path,
                    "has no key, so it tolerates every taint (control-plane and other dedicated nodes "
                    "too); name the taint's key, or have the operator set ALLOW_WILDCARD_TOLERATIONS=true",
                )
            )
        elif toleration.key and ANY_KEY not in allowed_keys and toleration.key not in allowed_keys:
            found.append(
                (
                    f"{path}.key",
                    f"{toleration.key!r} is not a taint this region lets records tolerate "
                    f"(ALLOWED_TOLERATION_KEYS: {', '.join(allowed_keys) or 'none'}); drop the toleration, "
                    "or have the operator add the key",
                )
            )
    return found


def resource_problems(spec: EndpointSpec, name: str, policy: EndpointPolicy) -> list[Problem]:
    """GPUs per pod and cpu/memory per container above their caps, in the resources as they would be
    rendered (GCO's defaults included)."""
    rendered = container_resources(spec, name)
    return [
        *_device_problems(spec, rendered, policy.max_gpus_per_pod),
        *_compute_problems(spec, rendered, policy),
    ]


def total_problems(spec: EndpointSpec, name: str, policy: EndpointPolicy) -> list[Problem]:
    """Devices and cpu of the whole endpoint above the per-endpoint caps: per pod (as rendered) times the
    most pods it may run, the primary's largest count (``replicas`` or ``autoscaling.max_replicas``)
    plus the canary's. A pod's cpu is the larger of its request and limit (the quota counts both)."""
    rendered = container_resources(spec, name)
    primary, field = _most_replicas(spec)
    canary = spec.canary.replicas if spec.canary is not None else 0
    pods = primary + canary
    counted = f"{primary} replicas ({field})" + (f" + {canary} canary replicas" if canary else "")
    per_pod = {
        "devices": max(
            (
                quantity(rendered[side][device])
                for side in rendered
                for device in ACCELERATOR_RESOURCE.values()
                if device in rendered[side]
            ),
            default=Decimal(0),
        ),
        "cpu": max(
            (quantity(rendered[side]["cpu"]) for side in rendered if "cpu" in rendered[side]),
            default=Decimal(0),
        ),
    }
    caps = {
        "devices": (
            Decimal(policy.max_gpus_per_endpoint),
            str(policy.max_gpus_per_endpoint),
            "MAX_GPUS_PER_ENDPOINT",
        ),
        "cpu": (quantity(policy.max_cpu_per_endpoint), policy.max_cpu_per_endpoint, "MAX_CPU_PER_ENDPOINT"),
    }
    problems = []
    for what, (cap, shown, setting) in caps.items():
        total = per_pod[what] * pods
        if total > cap:
            message = (
                f"{counted} x {_plain(per_pod[what])} {'GPUs/devices' if what == 'devices' else 'cpu'} "
                f"per pod = {_plain(total)}, above this region's cap of {shown} per endpoint ({setting}); "
                "ask for fewer replicas or less per pod, or have the operator raise "
                f"{setting} (the namespace's ResourceQuota bounds all endpoints together)"
            )
            problems.append((field, message))
    return problems


def _most_replicas(spec: EndpointSpec) -> tuple[int, str]:
    """The primary's largest pod count and the field that sets it."""
    if spec.autoscaling is not None and spec.autoscaling.max_replicas > spec.replicas:
        return spec.autoscaling.max_replicas, "spec.autoscaling.max_replicas"
    return spec.replicas, "spec.replicas"


def _plain(number: Decimal) -> str:
    return str(number.normalize()) if number != number.to_integral_value() else str(int(number))


def _device_problems(spec: EndpointSpec, rendered: dict[str, dict[str, str]], cap: int) -> list[Problem]:
    """Accelerator devices above ``cap``: ``gpu_count``, or a device named in the record's resources."""
    found: dict[str, Problem] = {}
    own_device = ACCELERATOR_RESOURCE[spec.accelerator] if spec.gpu_count > 0 else None
    for side in ("requests", "limits"):
        for device in ACCELERATOR_RESOURCE.values():
            value = rendered[side].get(device)
            if value is None or quantity(value) <= cap:
                continue
            path = "spec.gpu_count" if device == own_device else f"spec.resources.{side}.{device}"
            found.setdefault(
                path, (path, _over(value, f"{cap} devices per pod", "MAX_GPUS_PER_POD", str(cap)))
            )
    return list(found.values())


def _compute_problems(
    spec: EndpointSpec, rendered: dict[str, dict[str, str]], policy: EndpointPolicy
) -> list[Problem]:
    """cpu and memory requests and limits above their caps. What the record gave is named first; a
    default over a cap (a cap set below GCO's defaults) is named only when nothing the record gave is."""
    caps = {
        "cpu": (policy.max_cpu_per_container, "MAX_CPU_PER_CONTAINER"),
        "memory": (policy.max_memory_per_container, "MAX_MEMORY_PER_CONTAINER"),
    }
    given = {"requests": spec.resources.requests, "limits": spec.resources.limits}
    over = [
        (side, resource, value, resource in given[side])
        for side in ("requests", "limits")
        for resource, (cap, _) in caps.items()
        if (value := rendered[side].get(resource)) is not None and quantity(value) > quantity(cap)
    ]
    if any(from_record for *_, from_record in over):
        over = [entry for entry in over if entry[3]]
    problems = []
    for side, resource, value, from_record in over:
        cap, setting = caps[resource]
        shown = value if from_record else f"{value} (the default when the record sets none)"
        problems.append(
            (f"spec.resources.{side}.{resource}", _over(shown, f"{cap} per container", setting, cap))
        )
    return problems


def _over(value: str, cap: str, setting: str, most: str) -> str:
    return (
        f"{value} is above this region's cap of {cap} ({setting}); ask for at most {most}, "
        f"or have the operator raise {setting}"
    )


def positive_quantity(value: str) -> Decimal:
    """A cap setting's quantity as a number; raises ``ValueError`` unless it is a quantity above 0."""
    try:
        number = quantity(value)
    except ValueError:
        raise ValueError("must be a Kubernetes quantity such as '96', '500m', '1Ti'") from None
    if number <= 0:
        raise ValueError("must be above 0")
    return number
