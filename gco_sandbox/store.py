"""The object store behind the sandbox API server: Kubernetes' storage semantics without HTTP.

Where it stands in the flow: under the cluster gateway. Every request the fleet makes to the sandbox API
server (a LOCAL STAND-IN, not Kubernetes) ends in one method here: create, get, list, replace, patch,
apply, delete, and the ``status``/``scale`` subresources. It keeps one global resourceVersion counter,
uids, generations (bumped only when ``spec`` changes), managedFields, schema validation and the
Deployment readiness simulation, and raises ``ApiError`` with Kubernetes' codes and reasons. The
pure pieces (errors, records, body checks, defaults, list pages) are in ``objects``.

Stored objects are never mutated: every write stores a new dict, so readers may serialise what they got
after the lock is released.
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from gco_sandbox import apply as ssa
from gco_sandbox import patching, selectors, simulation
from gco_sandbox.objects import (
    VOLATILE,
    ApiError,
    Collection,
    Key,
    Obj,
    Record,
    WriteOptions,
    apply_defaults,
    bad_request,
    check_name,
    check_precondition,
    decode_continue,
    encode_continue,
    entries_changed,
    incoming,
    initial_status,
    invalid,
    not_found,
    now_iso,
    patched,
    qualified,
    select_page,
    set_server_fields,
    to_scale,
    without_server_fields,
)
from gco_sandbox.resources import NAMESPACES, RESOURCES, ResourceType
from gco_sandbox.semantics import semantic_error
from gco_sandbox.validation import Validator

INITIAL_NAMESPACES = ("default", "kube-system", "gco-system", "gco-inference")
CONTROLLER = "kube-controller-manager"


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
            self._collections: dict[str, Collection] = {r.store_key: Collection() for r in RESOURCES}
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
        record = self._collections[resource.store_key].records.get((namespace, name))
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
        start = decode_continue(continue_token) if continue_token else None
        with self.lock:
            self.settle()
            collection = self._collections[resource.store_key]
            items, more = select_page(collection, namespace, labels, fields, limit, start)
            metadata: Obj = {"resourceVersion": self.resource_version}
        if more:
            last = items[-1]["metadata"]
            metadata["continue"] = encode_continue((last.get("namespace", ""), last["name"]))
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }

    # --- writes ------------------------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, body: Any, options: WriteOptions) -> Obj:
        obj = incoming(resource, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        with self.lock:
            self.settle()
            self._check_namespace(resource, namespace)
            if (namespace, name) in self._collections[resource.store_key].records:
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
        obj = incoming(resource, namespace, body, name)
        with self.lock:
            self.settle()
            record = self._record(resource, namespace, name)
            check_precondition(resource, record.obj, obj)
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
            obj = patched(live, patch_type, body)
            if not isinstance(obj, dict):
                raise bad_request("the patch did not produce an object")
            check_precondition(resource, live, obj)
            obj = incoming(resource, namespace, obj, name, keep_status=subresource == "status")
            if subresource != "status":
                obj.pop("status", None)
            else:
                obj = {**patching.deep_copy(live), "status": obj.get("status", {})}
            return self._commit_update(resource, record, obj, options, subresource)

    def _commit_update(
        self, resource: ResourceType, record: Record, obj: Obj, options: WriteOptions, subresource: str
    ) -> Obj:
        """Store a non-apply write (PUT or patch): the writer owns what it changed (or the managedFields
        it wrote, as a hand-over of ownership does), then commit."""
        given = ssa.written_entries(obj["metadata"].get("managedFields"), record.entries)
        if given is not None:
            return self._commit(resource, record, obj, given, options, subresource)
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
        config = incoming(resource, namespace, body, name)
        config.pop("status", None)
        with self.lock:
            self.settle()
            self._check_namespace(resource, namespace)
            record = self._collections[resource.store_key].records.get((namespace, name))
            if record is not None:  # as kube-apiserver: a resourceVersion is checked against a live
                check_precondition(resource, record.obj, config)  # object only, never on creation
            live = without_server_fields(record.obj) if record else None
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
                self._collections[resource.store_key].pop((namespace, name))
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
            new_scale = body if patch_type is None else patched(scale, patch_type, body)
            replicas = new_scale.get("spec", {}).get("replicas") if isinstance(new_scale, dict) else None
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    resource, name, f"spec.replicas: Invalid value: {replicas!r}: must be an integer >= 0"
                )
            if patch_type is None:
                check_precondition(resource, record.obj, new_scale)
            obj = patching.deep_copy(record.obj)
            obj["spec"]["replicas"] = replicas
            obj.pop("status", None)
            return to_scale(self._commit_update(resource, record, obj, options, "scale"))

    # --- internals ---------------------------------------------------------------------------------

    def _check_namespace(self, resource: ResourceType, namespace: str) -> None:
        if resource.namespaced and ("", namespace) not in self._collections["namespaces"].records:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

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
        check_name(resource, name)
        if subresource != "status":
            obj["status"] = patching.deep_copy(old.get("status")) if old else initial_status(resource)
            if obj["status"] is None:
                obj.pop("status")
        apply_defaults(resource, obj, old)
        self._validate(resource, obj, old)
        spec_changed = old is None or old.get("spec") != obj.get("spec")
        if (
            old is not None
            and without_server_fields(old) == without_server_fields(obj)
            and not entries_changed(record, entries)
        ):
            return old
        set_server_fields(obj, old, spec_changed, now_iso(self.clock))
        meta["managedFields"] = [entry.render() for entry in entries]
        if options.dry_run:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"] if old else ""
            return obj
        meta["resourceVersion"] = self._next_rv()
        new_record = Record(obj, entries, record.ready_at if record else 0.0)
        if resource.plural == "deployments" and spec_changed:
            self._schedule(new_record, (meta.get("namespace", ""), name))
        self._collections[resource.store_key].put((meta.get("namespace", ""), name), new_record)
        return obj

    def _validate(self, resource: ResourceType, obj: Obj, old: Obj | None) -> None:
        """The JSON schema (when a version is set), then what kube-apiserver checks beyond it."""
        error = None
        if self.validator is not None:
            meta = {k: v for k, v in obj["metadata"].items() if k not in VOLATILE}
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
