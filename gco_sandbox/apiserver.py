"""The sandbox Kubernetes API server: a LOCAL STAND-IN, not Kubernetes, that the official ``kubernetes``
client (typed APIs and ``DynamicClient``) talks to unchanged over HTTP.

Where it stands in the flow: it plays the cluster where speed or control matters more than fidelity.
``cluster.py`` (the fleet's gateway) LISTs, applies and deletes against it in fast tests, benchmarks at
large N and ``gco-tasks sandbox``; the real control plane (``controlplane.py``: kube-apiserver and its
controllers, built from source) is the reference, and the fleet's integration tests run on both. This
module is the server itself: request handling, the operator paths under ``/_sandbox/``
(request counters, fault injection, object dump, reset) and the server's lifecycle. Routing is
``routing.py``, counters and faults ``faults.py``, the HTTP server ``http_edge.py``; semantics live in
``store.py`` (storage, resourceVersion, validation, readiness simulation), ``objects.py``,
``semantics.py`` (the checks beyond the JSON schemas), ``apply.py`` (managedFields, server-side apply),
``patching.py`` and ``selectors.py``.

What it does NOT model (``tests/integration/test_conformance.py`` lists and checks each against the real
server): controllers (no ReplicaSets or pods, so no rollout states: a Deployment's status follows its
spec after a delay, only an image containing the crash-loop pattern stays unready; no garbage
collection; no HPA controller), admission (no ServiceAccount check), RBAC, watches, defaulting beyond a
Deployment's ``replicas`` and a Service's ``type``/``clusterIP``, and the real server's 500 on an apply
naming an unknown field (it answers 422).

Usage::

    with SandboxAPIServer(port=0, ready_delay=1.0) as server:
        server.write_kubeconfig("/tmp/k.yaml")   # then kubernetes.config.load_kube_config("/tmp/k.yaml")
        ...  # or ApiClient(Configuration(host=server.url))
        server.stats()  # {"list deployments": 3, "apply services": 1, ...}
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gco_sandbox import resources
from gco_sandbox.faults import Fault, Faults, Stats
from gco_sandbox.http_edge import HTTPServer, Response
from gco_sandbox.objects import ApiError, WriteOptions, bad_request, to_scale
from gco_sandbox.resources import ResourceType
from gco_sandbox.routing import (
    PATCH_TYPES,
    Route,
    decode_body,
    discovery,
    flag,
    route,
    verb_of,
    write_options,
)
from gco_sandbox.store import Store
from gco_sandbox.validation import Validator

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class SandboxAPIServer:
    """The sandbox API server on 127.0.0.1 (a LOCAL STAND-IN, not Kubernetes); thread-safe."""

    def __init__(
        self,
        port: int = 0,
        ready_delay: float = 1.0,
        crashloop_pattern: str = "crashloop",
        validate_version: str | None = resources.DEFAULT_VERSION,
        host: str = "127.0.0.1",
    ) -> None:
        self.version = validate_version or resources.DEFAULT_VERSION
        self.store = Store(
            validator=Validator(validate_version) if validate_version else None,
            ready_delay=ready_delay,
            crashloop_pattern=crashloop_pattern,
        )
        self.counters = Stats()
        self.faults = Faults()
        self._host, self._port = host, port
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SandboxAPIServer:
        if self._httpd is None:
            self._httpd = HTTPServer((self._host, self._port), self)
            self._port = int(self._httpd.server_address[1])
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="sandbox-apiserver",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxAPIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox") -> Path:
        """Write a kubeconfig that ``kubernetes.config.load_kube_config(path)`` loads."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "sandbox"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": "gco-inference"},
                }
            ],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # --- in-process controls -----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return self.counters.snapshot()

    def reset(self) -> None:
        """Objects back to the four namespaces; counters and faults cleared."""
        self.store.reset()
        self.counters.reset()
        self.faults.clear()

    def add_fault(self, **fault: Any) -> None:
        self.faults.add(Fault.from_json(fault))

    # --- requests ----------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, headers: dict[str, str]
    ) -> Response:
        if path.startswith("/_sandbox/"):
            return self._operator(method, path, raw)
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, b"ok", {"Content-Type": "text/plain"}
        target = route(path)
        if target is None:
            if method == "GET":
                document = discovery(path, self.version)
                if document is not None:
                    return 200, document, {}
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({method} {path})"
            )
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        patch_type = PATCH_TYPES.get(content_type.split(";")[0].strip()) if method == "PATCH" else None
        verb = verb_of(method, target, patch_type)
        self.counters.count(verb, target.label)
        fault = self.faults.take(verb, target.label, target.name)
        if fault is not None:
            self._inject(fault, target)
        body = decode_body(raw, content_type)
        agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "")
        return self._resource(method, verb, target, query, body, patch_type, agent)

    def _inject(self, fault: Fault, target: Route) -> None:
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000)
        if fault.status:
            reason = _REASONS.get(fault.status, "InternalError")
            throttled = fault.status in (429, 503)
            raise ApiError(
                fault.status,
                reason,
                f"injected fault for {target.label}",
                {"retryAfterSeconds": fault.retry_after} if throttled else None,
                {"Retry-After": str(fault.retry_after)} if throttled else None,
            )

    def _resource(
        self,
        method: str,
        verb: str,
        target: Route,
        query: dict[str, list[str]],
        body: Any,
        patch_type: str | None,
        agent: str,
    ) -> Response:
        store, resource, ns, name = self.store, target.resource, target.namespace, target.name
        options = write_options(query, agent)
        if method == "GET" and name is None:
            return 200, self._list(target, query), {}
        if method == "POST" and name is None:
            return 201, store.create(resource, ns, body, options), {}
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        if target.subresource == "scale":
            return self._scale(method, target, name, body, patch_type, options)
        if method == "GET":
            return 200, store.get(resource, ns, name), {}
        if method == "PUT":
            return 200, store.replace(resource, ns, name, body, options, target.subresource), {}
        if method == "DELETE":
            return 200, _deleted(resource, store.delete(resource, ns, name, options)), {}
        if method == "PATCH":
            return self._patch(target, name, body, patch_type, options)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _list(self, target: Route, query: dict[str, list[str]]) -> Any:
        return self.store.list_objects(
            target.resource,
            target.namespace or None,
            label_selector=flag(query, "labelSelector"),
            field_selector=flag(query, "fieldSelector"),
            limit=_int(flag(query, "limit")),
            continue_token=flag(query, "continue"),
        )

    def _patch(
        self, target: Route, name: str, body: Any, patch_type: str | None, options: WriteOptions
    ) -> Response:
        store, resource, ns = self.store, target.resource, target.namespace
        if patch_type is None:
            raise ApiError(
                415, "UnsupportedMediaType", "the body of a PATCH must be one of " + ", ".join(PATCH_TYPES)
            )
        if patch_type != "apply":
            return 200, store.patch(resource, ns, name, patch_type, body, options, target.subresource), {}
        if not options.manager_given:
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        if target.subresource:
            raise ApiError(405, "MethodNotAllowed", "the sandbox applies only to whole objects")
        existed = True
        try:
            store.get(resource, ns, name)
        except ApiError:
            existed = False
        obj = store.apply(resource, ns, name, body, options)
        return (200 if existed else 201), obj, {}

    def _scale(
        self, method: str, target: Route, name: str, body: Any, patch_type: str | None, options: WriteOptions
    ) -> Response:
        store, resource, ns = self.store, target.resource, target.namespace
        if method == "GET":
            return 200, to_scale(store.get(resource, ns, name)), {}
        if method == "PUT":
            return 200, store.write_scale(resource, ns, name, None, body, options), {}
        if method == "PATCH" and patch_type not in (None, "apply"):
            return 200, store.write_scale(resource, ns, name, patch_type, body, options), {}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on the scale subresource")

    # --- operator paths ----------------------------------------------------------------------------

    def _operator(self, method: str, path: str, raw: bytes) -> Response:
        key = (method, path.rstrip("/"))
        if key == ("GET", "/_sandbox/stats"):
            return 200, self.stats(), {}
        if key == ("POST", "/_sandbox/stats/reset"):
            self.counters.reset()
            return 200, {"reset": "stats"}, {}
        if key == ("POST", "/_sandbox/faults"):
            self.faults.add(Fault.from_json(decode_body(raw, "application/json")))
            return 201, {"faults": self.faults.list()}, {}
        if key == ("GET", "/_sandbox/faults"):
            return 200, {"faults": self.faults.list()}, {}
        if key == ("DELETE", "/_sandbox/faults"):
            self.faults.clear()
            return 200, {"faults": []}, {}
        if key == ("GET", "/_sandbox/objects"):
            return 200, self.store.dump(), {}
        if key == ("POST", "/_sandbox/reset"):
            self.reset()
            return 200, {"reset": "all"}, {}
        raise ApiError(404, "NotFound", f"no operator path {method} {path}")


def _int(value: str | None) -> int:
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        raise bad_request(f"limit must be an integer, not {value!r}") from None


def _deleted(resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """What DELETE answers: the object for Services (as Kubernetes does, and the client expects a
    V1Service), a Success Status for everything else."""
    if resource.plural == "services":
        return obj
    meta = obj["metadata"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta["name"],
            "group": resource.group,
            "kind": resource.plural,
            "uid": meta.get("uid", ""),
        },
    }
