"""What the sandbox store is made of, and its pure rules: API errors as Kubernetes ``Status`` objects,
records and collections, write options, request bodies checked against the URL, defaults,
preconditions, the patch types, the ``Scale`` view, list pages and continue tokens.

Where it stands in the flow: under ``store`` (the sandbox API server's storage, a LOCAL STAND-IN, not
Kubernetes). Pure functions of their arguments; the store holds the lock and the state.
"""

from __future__ import annotations

import base64
import bisect
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gco_sandbox import apply as ssa
from gco_sandbox import patching, selectors
from gco_sandbox.resources import NAMESPACES, ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

VOLATILE = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


class ApiError(Exception):
    """A failed request, as a Kubernetes ``Status``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}
        self.headers = dict(headers or {})  # e.g. Retry-After on a 429, as kube-apiserver sends it

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(resource: ResourceType) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def not_found(resource: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource)} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def invalid(resource: ResourceType, name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: {message}',
        {"name": name, "group": resource.group, "kind": resource.kind},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclass
class Record:
    obj: Obj  # as served; never mutated once stored
    entries: list[ssa.ManagedEntry]
    ready_at: float = 0.0


@dataclass
class WriteOptions:
    manager: str = "unknown"
    dry_run: bool = False
    force: bool = False
    manager_given: bool = False


@dataclass
class Collection:
    records: dict[Key, Record] = field(default_factory=dict)
    _sorted: list[Key] | None = None

    def sorted_keys(self) -> list[Key]:
        if self._sorted is None:
            self._sorted = sorted(self.records)
        return self._sorted

    def put(self, key: Key, record: Record) -> None:
        if key not in self.records:
            self._sorted = None
        self.records[key] = record

    def pop(self, key: Key) -> None:
        self.records.pop(key, None)
        self._sorted = None


def now_iso(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def incoming(
    resource: ResourceType,
    namespace: str,
    body: Any,
    name: str | None = None,
    keep_status: bool = True,
) -> Obj:
    """A request body checked against the URL: kind, apiVersion, namespace and name."""
    if not isinstance(body, dict):
        raise bad_request(f"the body of a {resource.kind} request must be a JSON or YAML object")
    obj: Obj = patching.deep_copy(body)
    for field_name, expected in (("kind", resource.kind), ("apiVersion", resource.api_version)):
        if obj.setdefault(field_name, expected) != expected:
            raise bad_request(f"{field_name} {obj[field_name]!r} does not match the URL ({expected})")
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if resource.namespaced:
        if meta.setdefault("namespace", namespace) != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
    else:
        meta.pop("namespace", None)
    if name is not None and meta.setdefault("name", name) != name:
        raise bad_request("the name of the object does not match the name on the URL")
    if not keep_status:
        obj.pop("status", None)
    return obj


def set_server_fields(obj: Obj, old: Obj | None, spec_changed: bool, now: str) -> None:
    """uid, creationTimestamp and generation: new for a create, kept (generation bumped when ``spec``
    changed) for an update."""
    meta = obj["metadata"]
    if old is None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        if "spec" in obj:
            meta["generation"] = 1
    else:
        for key in ("uid", "creationTimestamp", "generation"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        if spec_changed and "spec" in obj:
            meta["generation"] = int(old["metadata"].get("generation", 0)) + 1


def check_name(resource: ResourceType, name: str) -> None:
    """A name the kind accepts, or 422."""
    if not name:
        raise invalid(resource, "", "metadata.name: Required value: name or generateName is required")
    reason = resource.name_error(name)
    if reason:
        raise invalid(resource, name, f"metadata.name: Invalid value: {name!r}: {reason}")


def select_page(
    collection: Collection,
    namespace: str | None,
    labels: Any,
    fields: Any,
    limit: int,
    start: Key | None,
) -> tuple[list[Obj], bool]:
    """The objects of one list page after ``start``, in key order, and whether more remain."""
    keys = collection.sorted_keys()
    items: list[Obj] = []
    for key in keys[bisect.bisect_right(keys, start) if start else 0 :]:
        if namespace and key[0] != namespace:
            continue
        obj = collection.records[key].obj
        if not selectors.labels_match(labels, obj["metadata"].get("labels")):
            continue
        if fields and not selectors.fields_match(fields, obj):
            continue
        if limit and len(items) == limit:
            return items, True
        items.append(obj)
    return items, False


def entries_changed(record: Record | None, entries: list[ssa.ManagedEntry]) -> bool:
    if record is None:
        return True
    strip = [(e.identity, e.fields) for e in record.entries]
    return strip != [(e.identity, e.fields) for e in entries]


def without_server_fields(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in VOLATILE}
    return {**obj, "metadata": meta}


def check_precondition(resource: ResourceType, live: Obj, incoming: Obj) -> None:
    wanted = (incoming.get("metadata") or {}).get("resourceVersion")
    if wanted and wanted != live["metadata"]["resourceVersion"]:
        name = live["metadata"]["name"]
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified(resource)} "{name}": the '
            "object has been modified; please apply your changes to the latest version and try again",
            {"name": name, "group": resource.group, "kind": resource.plural},
        )


def patched(live: Obj, patch_type: str, body: Any) -> Any:
    try:
        if patch_type == "json":
            return patching.json_patch(live, body)
        if not isinstance(body, dict):
            raise patching.PatchError("a merge patch must be an object")
        if patch_type == "merge":
            return patching.json_merge_patch(live, body)
        return patching.strategic_merge_patch(live, body)
    except patching.PatchError as exc:
        raise ApiError(422, "Invalid", str(exc)) from None


def initial_status(resource: ResourceType) -> Obj | None:
    if resource is NAMESPACES:
        return {"phase": "Active"}
    if resource.plural in ("services", "ingresses"):
        return {"loadBalancer": {}}
    if resource.plural == "horizontalpodautoscalers":
        return {"currentReplicas": 0, "desiredReplicas": 0}
    return {} if resource.has_status else None


def apply_defaults(resource: ResourceType, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec")
    if resource.plural == "deployments" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    if resource.plural == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
        if spec["type"] != "ExternalName":
            spec.setdefault("clusterIP", old_ip or _cluster_ip(obj["metadata"].get("name", "")))
    if resource is NAMESPACES:
        obj["spec"] = {"finalizers": ["kubernetes"]}


def _cluster_ip(name: str) -> str:
    digest = sum(name.encode()) * 7919 + len(name)
    return f"10.96.{digest // 254 % 254 + 1}.{digest % 254 + 1}"


def to_scale(deployment: Obj) -> Obj:
    meta = deployment["metadata"]
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels", {})
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": deployment.get("spec", {}).get("replicas", 0)},
        "status": {
            "replicas": deployment.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def encode_continue(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_continue(token: str) -> Key:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(namespace), str(name))
    except (ValueError, TypeError):
        raise bad_request("continue key is not valid: malformed token") from None
