"""Rendering: one endpoint record and one region in, the exact Kubernetes objects that should exist out.

Where it stands in the flow: step 2 of reconciling one endpoint (``desired = render(endpoint, region)`` in
``reconciler``), between reading the record (``records.Endpoint``) and planning (``plan``). More in
docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from gco_tasks.core import conventions as names
from gco_tasks.core.records import DELETED, STOPPED, Endpoint, EndpointSpec, InvalidEndpointError
from gco_tasks.core.rendering.alb import alb_problems
from gco_tasks.core.rendering.autoscaling import hpa
from gco_tasks.core.rendering.deployment import deployment
from gco_tasks.core.rendering.policy import check_policy
from gco_tasks.core.rendering.traffic import ingress, service
from gco_tasks.core.rendering.workload import Obj, RenderOptions, Workload, autoscaling_enabled


def render_endpoint(endpoint: Endpoint, region: str, options: RenderOptions) -> list[Obj]:
    """Every object that should exist in ``region`` for ``endpoint``, in apply order, each carrying its
    ``gco.io/desired-hash``. ``[]`` when the endpoint is deleted or does not target the region.

    Raises ``InvalidEndpointError`` naming the field for the few records the model accepts but Kubernetes
    would not (a request above the limit the user also set, a negative quantity), and for those the
    region's policy refuses (``rendering.policy``: caps, keyless tolerations), and for an ALB path or
    annotation value the load balancer would refuse (``rendering.alb``): bad input is data."""
    if endpoint.desired_state == DELETED or not endpoint.targets(region):
        return []
    check_policy(endpoint, options.policy)
    _check_model_directory(endpoint, options)
    namespace = endpoint.namespace or options.namespace
    spec = endpoint.spec
    primary = _primary_workload(endpoint, region, namespace)
    if endpoint.desired_state == STOPPED:
        objects = _workload_objects(spec, primary, options)
    else:
        objects = _serving_objects(endpoint, primary, options)
    refused = alb_problems(objects)
    if refused:
        raise InvalidEndpointError(refused, endpoint.endpoint_name)
    return [_with_hash(obj) for obj in objects]


def _check_model_directory(endpoint: Endpoint, options: RenderOptions) -> None:
    """An endpoint's model sync writes ``/models/{name}``: a name that is one of the operator's shared
    directories would let its record replace what every endpoint reads there."""
    source = endpoint.spec.model_source or ""
    tops = {directory.split("/")[0] for directory in options.model_shared_dirs}
    if source.startswith("s3://") and endpoint.endpoint_name in tops:
        message = (
            f"is one of the shared model directories (MODEL_SHARED_DIRS), which its S3 model sync would "
            f"overwrite in /models/{endpoint.endpoint_name}; choose another name, or have the operator "
            "take it out of MODEL_SHARED_DIRS"
        )
        raise InvalidEndpointError([("endpoint_name", message)], endpoint.endpoint_name)


def desired_objects(endpoint: Endpoint, region: str, options: RenderOptions) -> list[Obj]:
    """What should exist in ``region`` for ``endpoint``. Raises ``InvalidEndpointError`` for a record this
    fleet cannot serve: one in a namespace other than the one it manages (``options.namespace``)."""
    namespace = endpoint.namespace or options.namespace
    if namespace != options.namespace and endpoint.targets(region):
        message = (
            f"'{namespace}' is not the namespace this fleet manages "
            f"('{options.namespace}', INFERENCE_NAMESPACE)"
        )
        raise InvalidEndpointError([("namespace", message)], endpoint.endpoint_name)
    return render_endpoint(endpoint, region, options)


def content_hash(obj: Mapping[str, Any]) -> str:
    """sha256 of the object's canonical JSON, leaving out the hash annotation itself (an annotations map
    left empty by that counts as absent), so a rendered object and its hash-less twin hash the same. Env
    vars count by name, not order (they are rendered in the record's order, which DynamoDB does not
    promise to keep)."""
    content = _canonical(obj)
    metadata = content.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("annotations"), dict):
        metadata["annotations"].pop(names.HASH_ANNOTATION, None)
        if not metadata["annotations"]:
            del metadata["annotations"]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(node: Any) -> Any:
    """A copy of ``node`` (plain dicts and lists rebuilt, scalars shared: cheaper than ``deepcopy``) with
    every ``env`` list sorted by name."""
    if isinstance(node, Mapping):
        copied = {key: _canonical(value) for key, value in node.items()}
        env = copied.get("env")
        if isinstance(env, list):
            env.sort(key=lambda var: str(var.get("name")) if isinstance(var, dict) else "")
        return copied
    if isinstance(node, list):
        return [_canonical(value) for value in node]
    return node


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(kind, name)``: how desired and observed objects of one endpoint are matched up."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


# --------------------------------------------------------------------------- object sets


def _primary_workload(endpoint: Endpoint, region: str, namespace: str) -> Workload:
    spec = endpoint.spec
    if endpoint.desired_state == STOPPED:
        replicas: int | None = 0
    elif autoscaling_enabled(spec):
        replicas = None
    else:
        replicas = spec.replicas
    return Workload(
        endpoint=endpoint.endpoint_name,
        name=endpoint.endpoint_name,
        image=spec.image_for_region(region),
        replicas=replicas,
        canary=False,
        namespace=namespace,
    )


def _canary_workload(endpoint: Endpoint, namespace: str) -> Workload | None:
    canary = endpoint.spec.canary
    if canary is None:
        return None
    return Workload(
        endpoint=endpoint.endpoint_name,
        name=names.canary_name(endpoint.endpoint_name),
        image=canary.image,  # its own image in every region: region_image_uris are the primary's
        replicas=canary.replicas,
        canary=True,
        namespace=namespace,
    )


def _serving_objects(endpoint: Endpoint, primary: Workload, options: RenderOptions) -> list[Obj]:
    spec = endpoint.spec
    objects = _workload_objects(spec, primary, options)
    if autoscaling_enabled(spec):
        objects.append(hpa(spec, primary))
    canary = _canary_workload(endpoint, primary.namespace)
    if canary is not None:
        objects.extend(_workload_objects(spec, canary, options))
    objects.append(ingress(endpoint, primary, canary))
    return objects


def _workload_objects(spec: EndpointSpec, workload: Workload, options: RenderOptions) -> list[Obj]:
    return [deployment(spec, workload, options), service(spec, workload)]


def _with_hash(obj: Obj) -> Obj:
    obj["metadata"].setdefault("annotations", {})[names.HASH_ANNOTATION] = content_hash(obj)
    return obj
