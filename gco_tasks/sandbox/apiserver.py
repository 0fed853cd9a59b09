"""The sandbox Kubernetes API server: a LOCAL STAND-IN, not Kubernetes, that the official ``kubernetes``
client (typed APIs and ``DynamicClient``) talks to unchanged over HTTP.

Where it stands in the flow: it plays the cluster where speed or control matters more than fidelity.
``cluster.py`` (the fleet's gateway) LISTs, applies and deletes against it in fast tests, benchmarks at
large N and ``gco-tasks sandbox``; the real control plane (``controlplane.py``: kube-apiserver and its
controllers, built from source) is the reference, and the fleet's integration tests run on both. This
module is only the HTTP edge: routing, body decoding, the operator paths under ``/_sandbox/`` (request
counters, fault injection, object dump, reset) and the server's lifecycle. Semantics live in
``store.py`` (storage, resourceVersion, validation, readiness simulation), ``semantics.py`` (the checks
beyond the JSON schemas), ``apply.py`` (managedFields, server-side apply), ``patching.py`` and
``selectors.py``.

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

import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from gco_tasks.sandbox import resources
from gco_tasks.sandbox.resources import BY_PATH, ResourceType
from gco_tasks.sandbox.store import ApiError, Store, WriteOptions, bad_request, to_scale
from gco_tasks.sandbox.validation import Validator

_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}
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


# --- request counters and faults ----------------------------------------------------------------------


class Stats:
    """Request counts keyed ``"<verb> <resource>"``: ``"list deployments"``, ``"patch deployments/scale"``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, verb: str, resource: str) -> None:
        with self._lock:
            self._counts[f"{verb} {resource}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


@dataclass
class Fault:
    """The next ``count`` requests matching (verb, resource, name) stall ``delay_ms`` and/or fail with
    ``status``. ``verb``/``resource`` "*" (or absent) match anything."""

    verb: str = "*"
    resource: str = "*"
    name: str | None = None
    status: int | None = None
    delay_ms: int = 0
    count: int = 1

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise bad_request("a fault is a JSON object")
        known = {"verb", "resource", "name", "status", "delay_ms", "count"}
        if set(body) - known:
            raise bad_request(f"unknown fault fields: {sorted(set(body) - known)}")
        fault = cls(**body)
        if fault.status is None and not fault.delay_ms:
            raise bad_request("a fault needs a status, a delay_ms or both")
        return fault

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and (self.name is None or self.name == name)
        )


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(fault).copy() for fault in self._faults]

    def take(self, verb: str, resource: str, name: str | None) -> Fault | None:
        """The first fault matching this request, with its count used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(verb, resource, name):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


# --- routing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    resource: ResourceType
    namespace: str  # "" for cluster-scoped kinds or a list across namespaces
    name: str | None = None
    subresource: str = ""

    @property
    def label(self) -> str:
        return f"{self.resource.plural}/{self.subresource}" if self.subresource else self.resource.plural


def route(path: str) -> Route | None:
    """``/api/v1/namespaces/ns/services/x`` -> Route(services, "ns", "x"); None when not a resource path."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = BY_PATH.get((group, version, rest[0]))
    if resource is None:
        return None
    if resource.namespaced and len(rest) > 1 and not namespace:
        return None
    subresource = rest[2] if len(rest) == 3 else ""
    if subresource and subresource not in resource.subresources:
        return None
    return Route(resource, namespace, rest[1] if len(rest) >= 2 else None, subresource)


def discovery(path: str, version: str) -> Any:
    """The discovery document at ``path``, or None."""
    parts = [part for part in path.split("/") if part]
    if parts == ["version"]:
        return resources.version_info(version)
    if parts == ["api"]:
        return resources.api_versions()
    if parts == ["apis"]:
        return resources.api_group_list()
    if parts == ["api", "v1"]:
        return resources.resource_list("", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        group = resources.api_group(parts[1])
        return {"kind": "APIGroup", "apiVersion": "v1", **group} if group else None
    if len(parts) == 3 and parts[0] == "apis":
        return resources.resource_list(parts[1], parts[2])
    return None


#: A UTF-16 surrogate escape (``\ud83d``) not itself behind a backslash: valid JSON, not YAML.
_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def decode_body(raw: bytes, content_type: str) -> Any:
    """JSON, or YAML for ``*yaml`` content types (the client sends JSON even for apply-patch+yaml). A YAML
    body is refused, as kube-apiserver refuses it, when it escapes UTF-16 surrogates (``\ud83d\ude00``,
    which is how Python's ``json.dumps`` writes characters beyond the BMP): YAML has no such escape."""
    if not raw:
        return None
    if "yaml" in content_type and _SURROGATE_ESCAPE.search(raw):
        raise bad_request(
            "error decoding YAML: error converting YAML to JSON: "
            "yaml: found invalid Unicode character escape code"
        )
    try:
        return json.loads(raw)
    except ValueError:
        if "yaml" not in content_type:
            raise bad_request("the request body is not valid JSON") from None
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise bad_request(f"the request body is not valid YAML: {exc}") from None


def verb_of(method: str, route: Route, patch_type: str | None) -> str:
    if method == "GET":
        return "get" if route.name else "list"
    if method == "PATCH":
        return "apply" if patch_type == "apply" else "patch"
    return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())


def _flag(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


# --- the HTTP edge -------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gco-tasks-sandbox-apiserver"
    disable_nagle_algorithm = True
    timeout = 300
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            code, body, headers = self.server.sandbox.handle(
                method, url.path, parse_qs(url.query), raw, dict(self.headers.items())
            )
        except ApiError as exc:
            code, body, headers = exc.code, exc.status(), {}
        except Exception as exc:  # a bug in the sandbox must still answer like an API server
            code, body, headers = 500, ApiError(500, "InternalError", f"sandbox error: {exc!r}").status(), {}
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        content_type = headers.pop("Content-Type", "application/json")
        lines = [
            f"{self.protocol_version} {code} {self.responses.get(code, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(payload)}",
            *(f"{key}: {value}" for key, value in headers.items()),
        ]
        # Status line, headers and body in one send: half the syscalls of send_response() + write().
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxAPIServer) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping keep-alive connections (and ``stop()`` closing them) are normal here."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handle_error(request, client_address)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


Response = tuple[int, Any, dict[str, str]]


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
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SandboxAPIServer:
        if self._httpd is None:
            self._httpd = _HTTPServer((self._host, self._port), self)
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
        patch_type = _PATCH_TYPES.get(content_type.split(";")[0].strip()) if method == "PATCH" else None
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
            raise ApiError(
                fault.status,
                reason,
                f"injected fault for {target.label}",
                {"retryAfterSeconds": 1} if fault.status == 429 else None,
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
        options = WriteOptions(
            manager=_flag(query, "fieldManager") or agent.split("/")[0] or "unknown",
            dry_run=_flag(query, "dryRun") == "All",
            force=_flag(query, "force") == "true",
            manager_given=bool(_flag(query, "fieldManager")),
        )
        if method == "GET" and name is None:
            return (
                200,
                store.list_objects(
                    resource,
                    ns or None,
                    label_selector=_flag(query, "labelSelector"),
                    field_selector=_flag(query, "fieldSelector"),
                    limit=_int(_flag(query, "limit")),
                    continue_token=_flag(query, "continue"),
                ),
                {},
            )
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

    def _patch(
        self, target: Route, name: str, body: Any, patch_type: str | None, options: WriteOptions
    ) -> Response:
        store, resource, ns = self.store, target.resource, target.namespace
        if patch_type is None:
            raise ApiError(
                415, "UnsupportedMediaType", "the body of a PATCH must be one of " + ", ".join(_PATCH_TYPES)
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
