"""Container resources for rendering: the spec's requests and limits, GCO's defaults, the accelerator devices,
made into a pair Kubernetes accepts or refused with the field named.

Where it stands in the flow: inside step 2 (render), called by ``rendering.deployment`` for every inference
container. More in docs/architecture.md.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from gco_tasks.core.records import EndpointSpec, InvalidEndpointError

DEFAULT_REQUESTS = {"cpu": "1", "memory": "4Gi"}
DEFAULT_LIMITS = {"cpu": "4", "memory": "16Gi"}
ACCELERATOR_RESOURCE = {"nvidia": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}

_NATIVE = re.compile(r"^(cpu|memory|ephemeral-storage|hugepages-.+)$")
_RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def container_resources(spec: EndpointSpec, endpoint: str) -> dict[str, Any]:
    """``{"requests": ..., "limits": ...}`` for the inference container; raises ``InvalidEndpointError``
    naming the field when no valid pair exists."""
    given = spec.resources
    requests_given = "requests" in given.model_fields_set
    limits_given = "limits" in given.model_fields_set
    requests = dict(given.requests if requests_given else DEFAULT_REQUESTS)
    limits = dict(given.limits if limits_given else DEFAULT_LIMITS)
    _check_fields(requests, "requests", endpoint)
    _check_fields(limits, "limits", endpoint)
    if spec.gpu_count > 0:
        device = ACCELERATOR_RESOURCE[spec.accelerator]
        requests[device] = limits[device] = str(spec.gpu_count)
    for name in sorted(requests.keys() & limits.keys()):
        _reconcile_pair(name, requests, limits, requests_given, limits_given, endpoint)
    for name in sorted(requests.keys() - limits.keys()):
        if not _NATIVE.match(name):
            limits[name] = requests[name]  # an extended resource is limited at what it requests
    return {"requests": requests, "limits": limits}


def _reconcile_pair(
    name: str,
    requests: dict[str, str],
    limits: dict[str, str],
    requests_given: bool,
    limits_given: bool,
    endpoint: str,
) -> None:
    request, limit = _quantity(requests[name]), _quantity(limits[name])
    if request == limit or (request < limit and _NATIVE.match(name)):
        return
    if request > limit and not limits_given:
        limits[name] = requests[name]
    elif request > limit and not requests_given:
        requests[name] = limits[name]
    elif request > limit:
        raise _invalid(
            endpoint, f"requests.{name}", f"must not exceed limits.{name} ({requests[name]} > {limits[name]})"
        )
    else:
        raise _invalid(endpoint, f"requests.{name}", f"must equal limits.{name} for an extended resource")


def _check_fields(quantities: dict[str, str], side: str, endpoint: str) -> None:
    for name, text in quantities.items():
        if len(name) > 316 or not _RESOURCE_NAME.match(name):
            raise _invalid(
                endpoint, f"{side}.{name}", "is not a Kubernetes resource name (e.g. 'cpu', 'memory')"
            )
        if _quantity(text) < 0:
            raise _invalid(endpoint, f"{side}.{name}", f"must not be negative (got {text})")


def _quantity(text: str) -> Decimal:
    """A Kubernetes quantity as a number ('500m' -> 0.5, '4Gi' -> 4294967296); ValueError if malformed."""
    # Imported on first use: loading the Kubernetes client costs the CLI's table-only commands ~0.5 s.
    from kubernetes.utils.quantity import parse_quantity

    value: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    return value


#: Public name for the policy's caps (``rendering.policy``).
quantity = _quantity


def _invalid(endpoint: str, field: str, message: str) -> InvalidEndpointError:
    return InvalidEndpointError([(f"spec.resources.{field}", message)], endpoint)
