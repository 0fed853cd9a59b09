"""Real HTTP proxies that add faults to a real server's answers: one in front of moto's DynamoDB, one in
front of kube-apiserver. The fleet's processes reach the server through them (``AWS_ENDPOINT_URL_DYNAMODB``
or the kubeconfig), so botocore's and the Kubernetes client's own timeouts, retries and backoff are tested.

- ``FaultProxy`` (DynamoDB): latency, 5xx, throttling (``ProvisionedThroughputExceededException`` bodies,
  as DynamoDB sends them), connections dropped without an answer, and ``lost``: the request reaches moto
  (the write commits) and the answer never comes back, so the client retries a write that was done.
  Faults match on the operation (``X-Amz-Target``, e.g. ``Scan``) and are used up one request at a time,
  in the order armed (``count``; ``None``: until cleared); a ``pass`` lets one request through.
- ``KubernetesFaultProxy``: the stand-in's fault language (``gco_sandbox.faults.Fault``: verb, resource,
  name, ``status`` with ``Retry-After`` on 429/503, ``delay_ms`` before the request goes through), so a
  scenario arms the same faults on either server. Everything else is kube-apiserver's own answer.

Every request is counted by operation (or verb and resource) and by what was done to it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from gco_sandbox.faults import Fault as KubeFault
from gco_sandbox.faults import Faults

Kind = Literal["latency", "error", "throttle", "drop", "lost", "pass"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
ERROR_TYPE = "com.amazonaws.dynamodb.v20120810#"
Answer = tuple[int, list[tuple[str, str]], bytes]


class _Proxy:
    """A threaded HTTP server on loopback that hands each request to ``respond``; subclasses forward it."""

    name = "fault-proxy"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://localhost:{self._server.server_address[1]}"

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def respond(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer | None:
        """The answer to send, or None when the connection was dropped."""
        raise NotImplementedError

    @staticmethod
    def forwarded_headers(request: BaseHTTPRequestHandler) -> dict[str, str]:
        return {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}

    @staticmethod
    def drop(request: BaseHTTPRequestHandler) -> None:
        request.close_connection = True
        request.connection.shutdown(socket.SHUT_RDWR)  # no status line: the connection just goes


# --------------------------------------------------------------------------------------------------
# DynamoDB
# --------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: Kind
    operation: str = "*"
    count: int | None = None  # None: every matching request until cleared
    seconds: float = 0.0  # latency


class FaultProxy(_Proxy):
    """``url`` forwards to ``upstream`` (moto), applying the armed faults."""

    name = "dynamodb-fault-proxy"

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        super().__init__()

    def stop(self) -> None:
        self.clear()
        super().stop()

    def add(self, kind: Kind, operation: str = "*", count: int | None = None, seconds: float = 0.0) -> None:
        with self._lock:
            self.faults.append(Fault(kind, operation, count, seconds))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def take(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.operation in ("*", operation):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self.faults.remove(fault)
                    self.counts[f"{fault.kind} {operation}"] += 1
                    return fault
            self.counts[f"ok {operation}"] += 1
        return None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        connection = http.client.HTTPConnection(self.upstream.hostname or "", self.upstream.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def respond(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer | None:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2] or "?"
        fault = self.take(operation)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.seconds)
        elif fault is not None and fault.kind == "drop":
            self.drop(request)
            return None
        elif fault is not None and fault.kind not in ("pass", "lost"):
            return _dynamodb_error(fault)
        try:
            answer = self.forward(method, request.path, self.forwarded_headers(request), body)
        except OSError:  # moto went away (the session is ending): answer like a failing DynamoDB
            return _dynamodb_error(Fault("error"))
        if fault is not None and fault.kind == "lost":  # done upstream; the client never hears of it
            self.drop(request)
            return None
        return answer


def _dynamodb_error(fault: Fault) -> Answer:
    if fault.kind == "throttle":
        status, error = 400, "ProvisionedThroughputExceededException"
        message = "The level of configured provisioned throughput for the table was exceeded."
    else:
        status, error, message = 500, "InternalServerError", "Internal server error"
    payload = json.dumps({"__type": ERROR_TYPE + error, "message": message}).encode()
    return status, [("Content-Type", "application/x-amz-json-1.0")], payload


# --------------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------------

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def classify(method: str, path: str, content_type: str) -> tuple[str, str, str | None]:
    """(verb, resource, name) of a request as the stand-in names them: ``("apply", "deployments",
    "x")``, ``("list", "services", None)``, ``("patch", "deployments/scale", "x")``."""
    parts = [part for part in urlsplit(path).path.split("/") if part]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return method.lower(), "*", None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource, name = (rest[0] if rest else "*"), (rest[1] if len(rest) > 1 else None)
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        verb = "get" if name else "list"
    elif method == "PATCH":
        verb = "apply" if content_type.startswith("application/apply-patch") else "patch"
    else:
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
    return verb, resource, name


class KubernetesFaultProxy(_Proxy):
    """Plain HTTP on loopback in front of kube-apiserver (HTTPS, client certificate): ``add_fault`` and
    ``faults`` as on the stand-in (``SandboxAPIServer``); ``write_kubeconfig`` points a client at it."""

    name = "kubernetes-fault-proxy"

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        self.upstream = urlsplit(upstream)
        self.context = context
        self.faults = Faults()
        self._local = threading.local()
        super().__init__()

    def add_fault(self, **fault: Any) -> None:
        self.faults.add(KubeFault.from_json(fault))

    def stop(self) -> None:
        self.faults.clear()
        super().stop()

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fault-proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "fault-proxy", "user": {}}],
            "contexts": [
                {
                    "name": "fault-proxy",
                    "context": {
                        "cluster": "fault-proxy",
                        "user": "fault-proxy",
                        "namespace": "gco-inference",
                    },
                }
            ],
            "current-context": "fault-proxy",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def respond(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> Answer | None:
        verb, resource, name = classify(method, request.path, request.headers.get("Content-Type", ""))
        fault = self.faults.take(verb, resource, name)
        self.count(f"{'fault' if fault else 'ok'} {verb} {resource}")
        if fault is not None and fault.delay_ms:
            time.sleep(fault.delay_ms / 1000)  # inside the "server": the client's timeout runs meanwhile
        if fault is not None and fault.status:
            return _kubernetes_error(fault, resource)
        return self.forward(method, request.path, self.forwarded_headers(request), body)

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Over a kept-alive HTTPS connection per proxy thread (a new one if the last went stale)."""
        for attempt in (1, 2):
            connection = self._connection(fresh=attempt == 2)
            try:
                connection.request(method, path, body=body or None, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection(self, fresh: bool) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is None or fresh:
            connection = http.client.HTTPSConnection(
                self.upstream.hostname or "", self.upstream.port, timeout=60, context=self.context
            )
            self._local.connection = connection
        return connection


def _kubernetes_error(fault: KubeFault, resource: str) -> Answer:
    """A Status as kube-apiserver sends it; a 429 or 503 with ``Retry-After`` and ``retryAfterSeconds``."""
    status = fault.status or 500
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected fault for {resource}",
        "reason": _REASONS.get(status, "InternalError"),
        "code": status,
    }
    headers = [("Content-Type", "application/json")]
    if status in (429, 503):
        body["details"] = {"retryAfterSeconds": fault.retry_after}
        headers.append(("Retry-After", str(fault.retry_after)))
    return status, headers, json.dumps(body).encode()


# --------------------------------------------------------------------------------------------------
# The one handler
# --------------------------------------------------------------------------------------------------


def _handler(proxy: _Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                answer = proxy.respond(self, self.command, body)
            except OSError:  # the upstream went away (the session is ending)
                answer = 502, [("Content-Type", "text/plain")], b"upstream unreachable"
            if answer is not None:
                status, headers, payload = answer
                self._answer(status, [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP], payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            try:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up first (its read timeout)
                self.close_connection = True

    return Handler
