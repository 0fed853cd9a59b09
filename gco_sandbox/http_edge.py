"""The HTTP edge of the sandbox API server (a LOCAL STAND-IN, not Kubernetes): a threading HTTP/1.1
server that hands every request to the sandbox's ``handle`` and writes its answer, tracking keep-alive
connections so ``stop()`` can close them."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from gco_sandbox.objects import ApiError

#: (HTTP status, body (an object to serialise as JSON, or bytes), extra headers)
Response = tuple[int, Any, dict[str, str]]


class Sandbox(Protocol):
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, headers: dict[str, str]
    ) -> Response: ...


# --- the HTTP edge -------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gco-tasks-sandbox-apiserver"
    disable_nagle_algorithm = True
    timeout = 300
    server: HTTPServer

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
            code, body, headers = exc.code, exc.status(), dict(exc.headers)
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


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

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
