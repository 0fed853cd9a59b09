"""A real HTTP proxy in front of moto's DynamoDB that does what a bad day of DynamoDB does: latency,
5xx, throttling (``ProvisionedThroughputExceededException`` bodies, as DynamoDB sends them) and
connections dropped without an answer. The fleet's processes reach DynamoDB through it
(``AWS_ENDPOINT_URL_DYNAMODB``), so botocore's own timeouts, retries and backoff are what is tested.

Faults match on the operation (``X-Amz-Target``, e.g. ``Scan``) and are used up one request at a time,
in the order armed (``count``; ``None``: until cleared); a ``pass`` lets one request through, so a
sequence such as throttle, pass, error, pass is two calls that each succeed on their second attempt.
Every request is counted by operation and by what was done to it.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Kind = Literal["latency", "error", "throttle", "drop", "pass"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
ERROR_TYPE = "com.amazonaws.dynamodb.v20120810#"


@dataclass
class Fault:
    kind: Kind
    operation: str = "*"
    count: int | None = None  # None: every matching request until cleared
    seconds: float = 0.0  # latency


class FaultProxy:
    """``url`` forwards to ``upstream`` (moto), applying the armed faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dynamodb-fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://localhost:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()

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

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2] or "?"
            fault = proxy.take(operation)
            if fault is not None and fault.kind == "latency":
                time.sleep(fault.seconds)
            elif fault is not None and fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # no status line: the connection just goes
                return
            elif fault is not None and fault.kind != "pass":
                self._fail(fault)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            try:
                status, answer_headers, answer = proxy.forward("POST", self.path, headers, body)
            except OSError:  # moto went away (the session is ending): answer like a failing DynamoDB
                self._fail(Fault("error"))
                return
            self._answer(status, [(k, v) for k, v in answer_headers if k.lower() not in HOP_BY_HOP], answer)

        def _fail(self, fault: Fault) -> None:
            if fault.kind == "throttle":
                status, error = 400, "ProvisionedThroughputExceededException"
                message = "The level of configured provisioned throughput for the table was exceeded."
            else:
                status, error, message = 500, "InternalServerError", "Internal server error"
            payload = json.dumps({"__type": ERROR_TYPE + error, "message": message}).encode()
            self._answer(status, [("Content-Type", "application/x-amz-json-1.0")], payload)

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
