"""The fault proxies themselves (``faultproxy.py``), against a small real HTTP upstream: a request is
named as the stand-in names it, faults are used up in order, a Kubernetes fault is a Status as
kube-apiserver sends it, and a ``lost`` DynamoDB write reaches the upstream while its caller gets no
answer. Without this a proxy that forwarded everything untouched would let every fault scenario pass.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .faultproxy import FaultProxy, classify


@pytest.mark.parametrize(
    ("method", "path", "content_type", "named"),
    [
        ("GET", "/apis/apps/v1/namespaces/gco-inference/deployments", "", ("list", "deployments", None)),
        ("GET", "/apis/apps/v1/namespaces/gco-inference/deployments/x", "", ("get", "deployments", "x")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/gco-inference/deployments/x?fieldManager=gco-tasks",
            "application/apply-patch+yaml",
            ("apply", "deployments", "x"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/gco-inference/deployments/x/scale",
            "application/merge-patch+json",
            ("patch", "deployments/scale", "x"),
        ),
        ("DELETE", "/api/v1/namespaces/gco-inference/services/x", "", ("delete", "services", "x")),
        ("POST", "/apis/events.k8s.io/v1/namespaces/gco-inference/events", "", ("create", "events", None)),
        ("GET", "/version", "", ("get", "*", None)),
    ],
)
def test_requests_are_named_as_the_stand_in_names_them(
    method: str, path: str, content_type: str, named: tuple[str, str, str | None]
) -> None:
    assert classify(method, path, content_type) == named


class Upstream:
    """A real HTTP server that records each request's body and answers ``{"ok": true}``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                upstream.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                payload = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def proxied() -> Iterator[tuple[FaultProxy, Upstream]]:
    upstream = Upstream()
    proxy = FaultProxy(upstream.url).start()
    yield proxy, upstream
    proxy.stop()
    upstream.server.shutdown()
    upstream.server.server_close()


def call(proxy: FaultProxy, operation: str, body: bytes = b"{}") -> tuple[int, dict[str, Any]]:
    """One DynamoDB-style request through the proxy: (status, JSON answer)."""
    host, port = proxy.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        headers = {"X-Amz-Target": f"DynamoDB_20120810.{operation}", "Content-Type": "application/json"}
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_faults_are_used_up_in_order_and_only_on_their_operation(
    proxied: tuple[FaultProxy, Upstream],
) -> None:
    proxy, upstream = proxied
    proxy.add("throttle", "Scan", count=1)
    proxy.add("error", "Scan", count=1)
    assert call(proxy, "GetItem") == (200, {"ok": True})
    status, answer = call(proxy, "Scan")
    assert (status, answer["__type"].rpartition("#")[2]) == (400, "ProvisionedThroughputExceededException")
    status, answer = call(proxy, "Scan")
    assert (status, answer["__type"].rpartition("#")[2]) == (500, "InternalServerError")
    assert call(proxy, "Scan") == (200, {"ok": True})
    assert len(upstream.bodies) == 2, "a refused request never reaches the upstream"
    assert proxy.counts["throttle Scan"] == proxy.counts["error Scan"] == 1


def test_a_lost_write_reaches_the_upstream_and_its_caller_gets_no_answer(
    proxied: tuple[FaultProxy, Upstream],
) -> None:
    proxy, upstream = proxied
    proxy.add("lost", "PutItem", count=1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        call(proxy, "PutItem", b'{"Item": "the write"}')
    assert upstream.bodies == [b'{"Item": "the write"}'], "the write was done upstream"
    assert call(proxy, "PutItem", b'{"Item": "again"}') == (200, {"ok": True})
    assert proxy.counts["lost PutItem"] == 1
