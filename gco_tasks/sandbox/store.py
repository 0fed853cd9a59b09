"""The object store behind the sandbox API server: Kubernetes' storage semantics without HTTP.

Where it stands in the flow: under the cluster gateway. Every request the fleet makes to the sandbox API
server (a LOCAL STAND-IN, not Kubernetes) ends in one method here: create, get, list, replace, patch,
apply, delete, and the ``status``/``scale`` subresources. It keeps one global resourceVersion counter,
uids, generations (bumped only when ``spec`` changes), managedFields, schema validation and the
Deployment readiness simulation, and raises ``ApiError`` with Kubernetes' codes and reasons.

Stored objects are never mutated: every write stores a new dict, so readers may serialise what they got
after the lock is released.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gco_tasks.sandbox import apply as ssa
from gco_tasks.sandbox import patching, selectors, simulation
from gco_tasks.sandbox.resources import NAMESPACES, RESOURCES, ResourceType
from gco_tasks.sandbox.semantics import semantic_error
from gco_tasks.sandbox.validation import Validator

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

INITIAL_NAMESPACES = ("default", "kube-system", "gco-system", "gco-inference")
CONTROLLER = "kube-controller-manager"

_VOLATILE = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


class ApiError(Exception):
    """A failed request, as a Kubernetes ``Status``."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

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


class Store:
    """All objects of the sandbox, behind one lock."""

    def __init__(
        self,
        *,
        validator: Validator | None,
        ready_delay: float = 1.0,
        crashloop_pattern: str = "crashloop",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.validator = validator
        self.ready_delay = ready_delay
        self.crashloop_pattern = crashloop_pattern
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    # --- state -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the four initial namespaces and nothing else."""
        with self.lock:
            self._collections: dict[str, Collection] = {r.plural: Collection() for r in RESOURCES}
            self._rv = 0
            self._pending: list[tuple[float, str, Key]] = []
            for name in INITIAL_NAMESPACES:
                self.create(NAMESPACES, "", {"metadata": {"name": name}}, WriteOptions("sandbox"))

    def dump(self) -> dict[str, list[Obj]]:
        with self.lock:
            self.settle()
            return {
                plural: [c.records[k].obj for k in c.sorted_keys()] for plural, c in self._collections.items()
            }

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # --- reads -------------------------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        with self.lock:
            self.settle()
            return self._record(resource, namespace, name).obj

    def _record(self, resource: ResourceType, namespace: str, name: str) -> Record:
        record = self._collections[resource.plural].records.get((namespace, name))
        if record is None:
            raise not_found(resource, name)
        return record

    def list_objects(
        self,
        resource: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> Obj:
        try:
            labels = selectors.parse_label_selector(label_selector)
            fields = selectors.parse_field_selector(field_selector)
        except selectors.SelectorError as exc:
            raise bad_request(str(exc)) from None
        start = _decode_continue(continue_token) if continue_token else None
        with self.lock:
            self.settle()
            collection = self._collections[resource.plural]
            keys = collection.sorted_keys()
            index = bisect.bisect_right(keys, start) if start else 0
            items: list[Obj] = []
            more = False
            for key in keys[index:]:
                if namespace and key[0] != namespace:
                    continue
                obj = collection.records[key].obj
                if not selectors.labels_match(labels, obj["metadata"].get("labels")):
                    continue
                if fields and not selectors.fields_match(fields, obj):
                    continue
                if limit and len(items) == limit:
                    more = True
                    break
                items.append(obj)
            metadata: Obj = {"resourceVersion": self.resource_version}
        if more:
            last = items[-1]["metadata"]
            metadata["continue"] = _encode_continue((last.get("namespace", ""), last["name"]))
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    # --- writes ------------------------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, body: Any, options: WriteOptions) -> Obj:
        obj = self._incoming(resource, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        with self.lock:
            self.settle()
            self._check_namespace(resource, namespace)
            if (namespace, name) in self._collections[resource.plural].records:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{qualified(resource)} "{name}" already exists',
                    {"name": name, "group": resource.group, "kind": resource.plural},
                )
            entries = ssa.record_update(
                None,
                obj,
                [],
                manager=options.manager,
                api_version=resource.api_version,
                now=now_iso(self.clock),
            )
            return self._commit(resource, None, obj, entries, options)

    def replace(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        options: WriteOptions,
        subresource: str = "",
    ) -> Obj:
        obj = self._incoming(resource, namespace, body, name)
        with self.lock:
            self.settle()
            record = self._record(resource, namespace, name)
            _check_precondition(resource, record.obj, obj)
            if subresource == "status":
                obj = {**patching.deep_copy(record.obj), "status": obj.get("status", {})}
            return self._commit_update(resource, record, obj, options, subresource)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        options: WriteOptions,
        subresource: str = "",
    ) -> Obj:
        with self.lock:
            self.settle()
            record = self._record(resource, namespace, name)
            live = record.obj
            obj = _patched(live, patch_type, body)
            if not isinstance(obj, dict):
                raise bad_request("the patch did not produce an object")
            _check_precondition(resource, live, obj)
            obj = self._incoming(resource, namespace, obj, name, keep_status=subresource == "status")
            if subresource != "status":
                obj.pop("status", None)
            else:
                obj = {**patching.deep_copy(live), "status": obj.get("status", {})}
            return self._commit_update(resource, record, obj, options, subresource)

    def _commit_update(
        self, resource: ResourceType, record: Record, obj: Obj, options: WriteOptions, subresource: str
    ) -> Obj:
        """Store a non-apply write (PUT or patch): the writer owns what it changed, then commit."""
        entries = ssa.record_update(
            record.obj,
            obj,
            record.entries,
            manager=options.manager,
            api_version=resource.api_version,
            now=now_iso(self.clock),
            subresource=subresource,
        )
        return self._commit(resource, record, obj, entries, options, subresource)

    def apply(
        self, resource: ResourceType, namespace: str, name: str, body: Any, options: WriteOptions
    ) -> Obj:
        config = self._incoming(resource, namespace, body, name)
        config.pop("status", None)
        with self.lock:
            self.settle()
            self._check_namespace(resource, namespace)
            record = self._collections[resource.plural].records.get((namespace, name))
            live = _without_server_fields(record.obj) if record else None
            try:
                obj, entries = ssa.apply(
                    live,
                    config,
                    record.entries if record else [],
                    manager=options.manager,
                    force=options.force,
                    api_version=resource.api_version,
                    now=now_iso(self.clock),
                )
            except ssa.ApplyConflict as exc:
                raise ApiError(409, "Conflict", str(exc)) from None
            return self._commit(resource, record, obj, entries, options)

    def delete(self, resource: ResourceType, namespace: str, name: str, options: WriteOptions) -> Obj:
        with self.lock:
            self.settle()
            record = self._record(resource, namespace, name)
            if not options.dry_run:
                self._collections[resource.plural].pop((namespace, name))
                if resource is NAMESPACES:
                    self._drop_namespace(name)
            return record.obj

    def _drop_namespace(self, namespace: str) -> None:
        for collection in self._collections.values():
            for key in [k for k in collection.records if k[0] == namespace]:
                collection.pop(key)

    # --- scale subresource ---------------------------------------------------------------------------

    def get_scale(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        return to_scale(self.get(resource, namespace, name))

    def write_scale(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        patch_type: str | None,
        body: Any,
        options: WriteOptions,
    ) -> Obj:
        with self.lock:
            self.settle()
            record = self._record(resource, namespace, name)
            scale = to_scale(record.obj)
            new_scale = body if patch_type is None else _patched(scale, patch_type, body)
            replicas = new_scale.get("spec", {}).get("replicas") if isinstance(new_scale, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    resource, name, f"spec.replicas: Invalid value: {replicas!r}: must be an integer >= 0"
                )
            if patch_type is None:
                _check_precondition(resource, record.obj, new_scale)
            obj = patching.deep_copy(record.obj)
            obj["spec"]["replicas"] = replicas
            obj.pop("status", None)
            entries = ssa.record_update(
                record.obj,
                obj,
                record.entries,
                manager=options.manager,
                api_version=resource.api_version,
                now=now_iso(self.clock),
                subresource="scale",
            )
            return to_scale(self._commit(resource, record, obj, entries, options))

    # --- internals ---------------------------------------------------------------------------------

    def _check_namespace(self, resource: ResourceType, namespace: str) -> None:
        if resource.namespaced and ("", namespace) not in self._collections["namespaces"].records:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def _incoming(
        self,
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

    def _commit(
        self,
        resource: ResourceType,
        record: Record | None,
        obj: Obj,
        entries: list[ssa.ManagedEntry],
        options: WriteOptions,
        subresource: str = "",
    ) -> Obj:
        """Finish a write: server fields, defaults, validation, then store (unless dry-run)."""
        old = record.obj if record else None
        meta = obj["metadata"]
        name = meta.get("name") or ""
        if not name:
            raise invalid(resource, "", "metadata.name: Required value: name or generateName is required")
        reason = resource.name_error(name)
        if reason:
            raise invalid(resource, name, f"metadata.name: Invalid value: {name!r}: {reason}")
        if subresource != "status":
            obj["status"] = patching.deep_copy(old.get("status")) if old else _initial_status(resource)
            if obj["status"] is None:
                obj.pop("status")
        _apply_defaults(resource, obj, old)
        self._validate(resource, obj, old)
        spec_changed = old is None or old.get("spec") != obj.get("spec")
        if (
            old is not None
            and _without_server_fields(old) == _without_server_fields(obj)
            and not entries_changed(record, entries)
        ):
            return old
        self._set_server_fields(resource, obj, old, spec_changed)
        meta["managedFields"] = [entry.render() for entry in entries]
        if options.dry_run:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"] if old else ""
            return obj
        meta["resourceVersion"] = self._next_rv()
        new_record = Record(obj, entries, record.ready_at if record else 0.0)
        if resource.plural == "deployments" and spec_changed:
            self._schedule(new_record, (meta.get("namespace", ""), name))
        self._collections[resource.plural].put((meta.get("namespace", ""), name), new_record)
        return obj

    def _set_server_fields(
        self, resource: ResourceType, obj: Obj, old: Obj | None, spec_changed: bool
    ) -> None:
        meta = obj["metadata"]
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso(self.clock)
            if "spec" in obj:
                meta["generation"] = 1
        else:
            for key in ("uid", "creationTimestamp", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if spec_changed and "spec" in obj:
                meta["generation"] = int(old["metadata"].get("generation", 0)) + 1

    def _validate(self, resource: ResourceType, obj: Obj, old: Obj | None) -> None:
        """The JSON schema (when a version is set), then what kube-apiserver checks beyond it."""
        error = None
        if self.validator is not None:
            meta = {k: v for k, v in obj["metadata"].items() if k not in _VOLATILE}
            error = self.validator.error({**obj, "metadata": meta})
        error = error or semantic_error({"kind": resource.kind, **obj}, old)
        if error:
            raise invalid(resource, obj["metadata"].get("name", ""), error)

    # --- readiness simulation ------------------------------------------------------------------------

    def _schedule(self, record: Record, key: Key) -> None:
        record.ready_at = self.clock() + self.ready_delay
        heapq.heappush(self._pending, (record.ready_at, "deployments", key))

    def settle(self) -> None:
        """Bring every Deployment whose simulated rollout is due to its settled status."""
        now = self.clock()
        while self._pending and self._pending[0][0] <= now:
            due, plural, key = heapq.heappop(self._pending)
            record = self._collections[plural].records.get(key)
            if record is None or record.ready_at != due:
                continue
            self._settle_one(record, key)

    def _settle_one(self, record: Record, key: Key) -> None:
        resource = next(r for r in RESOURCES if r.plural == "deployments")
        status = simulation.settled_status(record.obj, self.crashloop_pattern, now_iso(self.clock))
        obj = {**record.obj, "status": status}
        entries = ssa.record_update(
            record.obj,
            obj,
            record.entries,
            manager=CONTROLLER,
            api_version=resource.api_version,
            now=now_iso(self.clock),
            subresource="status",
        )
        obj["metadata"] = {
            **obj["metadata"],
            "resourceVersion": self._next_rv(),
            "managedFields": [entry.render() for entry in entries],
        }
        self._collections["deployments"].put(key, Record(obj, entries, record.ready_at))


def entries_changed(record: Record | None, entries: list[ssa.ManagedEntry]) -> bool:
    if record is None:
        return True
    strip = [(e.identity, e.fields) for e in record.entries]
    return strip != [(e.identity, e.fields) for e in entries]


def _without_server_fields(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _VOLATILE}
    return {**obj, "metadata": meta}


def _check_precondition(resource: ResourceType, live: Obj, incoming: Obj) -> None:
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


def _patched(live: Obj, patch_type: str, body: Any) -> Any:
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


def _initial_status(resource: ResourceType) -> Obj | None:
    if resource is NAMESPACES:
        return {"phase": "Active"}
    if resource.plural in ("services", "ingresses"):
        return {"loadBalancer": {}}
    if resource.plural == "horizontalpodautoscalers":
        return {"currentReplicas": 0, "desiredReplicas": 0}
    return {} if resource.has_status else None


def _apply_defaults(resource: ResourceType, obj: Obj, old: Obj | None) -> None:
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


def _encode_continue(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> Key:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(namespace), str(name))
    except (ValueError, TypeError):
        raise bad_request("continue key is not valid: malformed token") from None
