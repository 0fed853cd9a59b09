"""A resource metrics API (``metrics.k8s.io/v1beta1``, what metrics-server serves) for the local control
plane, fed by pod annotations: ``kwok.x-k8s.io/usage-cpu`` and ``kwok.x-k8s.io/usage-memory`` (kwok's own
usage annotations) give each container of a Running pod that usage; a pod with neither has no metrics.

Where it stands in the flow: beside the fleet, a component ``controlplane.py`` starts (``python -m
gco_sandbox.metrics_api``) and registers as an aggregated APIService, so the HPA controller scales.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import ssl
import sys
from collections.abc import Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client, config

log = logging.getLogger("gco_sandbox.metrics_api")

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"
USAGE_ANNOTATIONS = {"cpu": "kwok.x-k8s.io/usage-cpu", "memory": "kwok.x-k8s.io/usage-memory"}
#: The window each sample stands for. The HPA ignores a CPU sample of a pod in its first minutes unless
#: it was taken at least one window after the pod turned Ready: short, so a test waits about a second.
WINDOW_SECONDS = 1
#: Empty OpenAPI documents: without them kube-apiserver logs a failed download every few seconds.
OPENAPI: dict[str, dict[str, Any]] = {
    "/openapi/v2": {"swagger": "2.0", "info": {"title": "gco-metrics", "version": VERSION}, "paths": {}},
    "/openapi/v3": {"paths": {}},
}
#: Where the APIService points: an ExternalName Service (the aggregator dials its name; no kube-proxy).
SERVICE_NAMESPACE, SERVICE_NAME = "kube-system", "gco-metrics"


# --------------------------------------------------------------------------------------------------
# What is served (pure)
# --------------------------------------------------------------------------------------------------


def resource_list() -> dict[str, Any]:
    """Discovery of the group version: pods only (no node metrics)."""
    pods = {
        "name": "pods",
        "singularName": "",
        "namespaced": True,
        "kind": "PodMetrics",
        "verbs": ["get", "list"],
    }
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [pods]}


def pod_metrics(pod: Mapping[str, Any], now: datetime.datetime) -> dict[str, Any] | None:
    """The PodMetrics of ``pod`` at ``now``, or None: not Running, or no usage annotation."""
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    usage = {resource: annotations[key] for resource, key in USAGE_ANNOTATIONS.items() if key in annotations}
    if not usage or (pod.get("status") or {}).get("phase") != "Running":
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "labels": metadata.get("labels") or {},
            "creationTimestamp": _rfc3339(now),
        },
        "timestamp": _rfc3339(now),
        "window": f"{WINDOW_SECONDS}s",
        "containers": [{"name": c["name"], "usage": dict(usage)} for c in containers],
    }


def pod_metrics_list(pods: Iterable[Mapping[str, Any]], now: datetime.datetime) -> dict[str, Any]:
    items = [found for found in (pod_metrics(pod, now) for pod in pods) if found is not None]
    return {"kind": "PodMetricsList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def parse_path(path: str) -> tuple[str | None, str | None] | None:
    """(namespace, pod name) of a pods request (either may be None: all namespaces, a list); None when
    the path is not one."""
    if not path.startswith(PREFIX + "/"):
        return None
    parts = path[len(PREFIX) + 1 :].strip("/").split("/")
    if parts == ["pods"]:
        return None, None
    if len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == "pods":
        return parts[1], (parts[3] if len(parts) == 4 else None)
    return None


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# Registration objects (pure): what controlplane.py creates once the server answers
# --------------------------------------------------------------------------------------------------


def registration(port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The ExternalName Service and the APIService that route ``metrics.k8s.io`` to ``127.0.0.1:port``;
    the aggregator verifies the server's certificate (``gco-metrics.kube-system.svc``) against the CA."""
    import base64

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{VERSION}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
        },
    }
    return [service, api_service]


def service_dns_name() -> str:
    return f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc"


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class PodSource:
    """Pods as plain dicts, read from the API server with the official client."""

    def __init__(self, kubeconfig: Path) -> None:
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.api = client.CoreV1Api(api_client)

    def pods(
        self, namespace: str | None, name: str | None, labels: str | None, fields: str | None
    ) -> list[dict[str, Any]]:
        if name is not None:
            fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
        if namespace is None:
            response: Any = self.api.list_pod_for_all_namespaces(
                label_selector=labels, field_selector=fields, _preload_content=False
            )
        else:
            response = self.api.list_namespaced_pod(
                namespace, label_selector=labels, field_selector=fields, _preload_content=False
            )
        return list(json.loads(response.data)["items"])


def make_handler(source: PodSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.rstrip("/") == PREFIX:
                self._send(200, resource_list())
                return
            if url.path in OPENAPI:  # the aggregator merges it into the server's own; nothing to add
                self._send(200, OPENAPI[url.path])
                return
            target = parse_path(url.path)
            if target is None:  # /apis (aggregated discovery) included: the aggregator falls back
                self._send(404, status(404, "NotFound", f"the server could not find {url.path}"))
                return
            namespace, name = target
            query = parse_qs(url.query)
            labels = query.get("labelSelector", [""])[0] or None
            fields = query.get("fieldSelector", [""])[0] or None
            try:
                pods = source.pods(namespace, name, labels, fields)
            except client.ApiException as exc:
                self._send(exc.status or 500, status(exc.status or 500, "InternalError", str(exc.reason)))
                return
            now = datetime.datetime.now(datetime.UTC)
            listed = pod_metrics_list(pods, now)
            if name is None:
                self._send(200, listed)
            elif listed["items"]:
                self._send(200, listed["items"][0])
            else:
                self._send(404, status(404, "NotFound", f'podmetrics.metrics.k8s.io "{name}" not found'))

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def serve(port: int, cert: Path, key: Path, client_ca: Path, kubeconfig: Path) -> ThreadingHTTPServer:
    """A server on ``127.0.0.1:port`` that only the aggregator can call: TLS with ``cert``, and a client
    certificate signed by ``client_ca`` required (kube-apiserver's ``--proxy-client-cert-file``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(client_ca))
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(PodSource(kubeconfig)))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def argv(port: int, cert: Path, key: Path, client_ca: Path, kubeconfig: Path) -> list[str]:
    """The command line ``controlplane.py`` starts this component with."""
    return [
        sys.executable,
        "-m",
        "gco_sandbox.metrics_api",
        f"--port={port}",
        f"--cert={cert}",
        f"--key={key}",
        f"--client-ca={client_ca}",
        f"--kubeconfig={kubeconfig}",
    ]


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--client-ca", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parsed = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = serve(parsed.port, parsed.cert, parsed.key, parsed.client_ca, parsed.kubeconfig)
    log.info("serving %s on 127.0.0.1:%d", GROUP_VERSION, parsed.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
