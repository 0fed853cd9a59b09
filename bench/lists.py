"""What a fan-out's LIST costs on the REAL kube-apiserver (1.36, ``gco_sandbox.controlplane``), and what
cheaper forms of it the API offers: paginated or not, ``resourceVersion=0``, ``resourceVersionMatch=
NotOlderThan``, metadata only (``PartialObjectMetadataList``), and one page in protobuf (which the Python
client cannot decode: shown for its size and time only).

Where it stands: beside the fleet (a benchmark). It starts its own control plane, creates N Deployments
labelled as the fleet's (``replicas: 0``, so no pod is scheduled), and lists them in each form R times:
pages, bytes, wall time of the requests and of decoding them (medians), and where kube-apiserver served
each from, read from its own metrics (``apiserver_cache_list_total``: the watch cache;
``apiserver_storage_list_total``: etcd).

    .venv/bin/python -m bench.lists [--deployments 1000 10000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from gco_sandbox.controlplane import ControlPlane

NS = "gco-inference"
SELECTOR = "gco.io/type=inference"
PATH = f"/apis/apps/v1/namespaces/{NS}/deployments"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PROTOBUF = "application/vnd.kubernetes.protobuf"

#: name -> (query parameters, Accept header). "{rv}" is replaced by a current resourceVersion.
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "limit=500 (the fleet's LIST)": ({"limit": "500"}, "application/json"),
    "limit=1000": ({"limit": "1000"}, "application/json"),
    "limit=2000": ({"limit": "2000"}, "application/json"),
    "limit=500, resourceVersion=0": ({"limit": "500", "resourceVersion": "0"}, "application/json"),
    "limit=500, NotOlderThan a recent rv": (
        {"limit": "500", "resourceVersion": "{rv}", "resourceVersionMatch": "NotOlderThan"},
        "application/json",
    ),
    "no limit": ({}, "application/json"),
    "no limit, resourceVersion=0": ({"resourceVersion": "0"}, "application/json"),
    "limit=500, metadata only": ({"limit": "500"}, METADATA_ONLY),
    "first page only, protobuf (not decoded)": ({"limit": "500"}, PROTOBUF),
}


def deployment(name: str) -> dict[str, Any]:
    """A Deployment shaped like the fleet's (labels, hash annotation, one container), scaled to 0."""
    labels = {"app": name, "project": "gco", "gco.io/type": "inference", "gco.io/endpoint": name}
    container = {"name": "server", "image": "vllm/vllm-openai:v0.6.3", "ports": [{"containerPort": 8000}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": {"gco.io/desired-hash": "0" * 64}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def seed(api: client.ApiClient, start: int, stop: int) -> float:
    """Create Deployments bench-<start>..<stop-1> with 8 threads; returns the seconds it took."""
    apps = client.AppsV1Api(api)
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for _ in pool.map(
            lambda i: apps.create_namespaced_deployment(
                NS, deployment(f"bench-{i:05d}"), _preload_content=False
            ),
            range(start, stop),
        ):
            pass
    return time.perf_counter() - began


def get(api: client.ApiClient, path: str, query: dict[str, str], accept: str) -> bytes:
    method, url, headers, _, _ = api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query.items()),
        header_params={"Accept": accept},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, _request_timeout=120)
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path} {query}: {response.status} {data[:300]!r}")
    return bytes(data)


def list_once(api: client.ApiClient, query: dict[str, str], accept: str) -> dict[str, Any]:
    """Every page of one LIST: pages, items, bytes, request seconds, decode seconds."""
    pages = items = size = 0
    request = decode = 0.0
    token = None
    while True:
        params = {**query, "labelSelector": SELECTOR}
        if token:  # a continued page carries the token, never a resourceVersion (422 otherwise)
            params = {k: v for k, v in params.items() if not k.startswith("resourceVersion")}
            params["continue"] = token
        began = time.perf_counter()
        body = get(api, PATH, params, accept)
        fetched = time.perf_counter()
        pages, size = pages + 1, size + len(body)
        if accept == PROTOBUF:  # one page: the continue token is inside the protobuf body
            request += fetched - began
            return {"pages": pages, "items": None, "bytes": size, "request": request, "decode": 0.0}
        page = json.loads(body)
        decode += time.perf_counter() - fetched
        request += fetched - began
        items += len(page.get("items", []))
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return {"pages": pages, "items": items, "bytes": size, "request": request, "decode": decode}


def served_from(api: client.ApiClient) -> dict[str, float]:
    """kube-apiserver's own counts of Deployment LISTs served from its watch cache
    (``apiserver_cache_list_total``) and of LISTs it sent to etcd (``etcd_requests_total``, list)."""
    text = get(api, "/metrics", {}, "text/plain").decode()
    counts = {"cache": 0.0, "etcd": 0.0}
    for line in text.splitlines():
        if 'resource="deployments"' not in line:
            continue
        if line.startswith("apiserver_cache_list_total{"):
            counts["cache"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("etcd_requests_total{") and 'operation="list"' in line:
            counts["etcd"] += float(line.rsplit(" ", 1)[1])
    return counts


def measure(api: client.ApiClient, repeat: int, only: Sequence[str] | None = None) -> dict[str, Any]:
    rv = json.loads(get(api, PATH, {"limit": "1"}, "application/json"))["metadata"]["resourceVersion"]
    results: dict[str, Any] = {}
    for name, (query, accept) in VARIANTS.items():
        if only and not any(name.startswith(prefix) for prefix in only):
            continue
        query = {key: value.replace("{rv}", rv) for key, value in query.items()}
        before = served_from(api)
        runs = [list_once(api, query, accept) for _ in range(repeat)]
        after = served_from(api)
        results[name] = {
            "pages": runs[0]["pages"],
            "items": runs[0]["items"],
            "megabytes": round(runs[0]["bytes"] / 1e6, 2),
            "request_ms": round(statistics.median(r["request"] for r in runs) * 1000, 1),
            "decode_ms": round(statistics.median(r["decode"] for r in runs) * 1000, 1),
            "from_cache": after["cache"] - before["cache"],
            "from_etcd": after["etcd"] - before["etcd"],
            "requests": sum(r["pages"] for r in runs),
        }
    return results


def render(report: dict[str, Any]) -> str:
    lines = [f"LIST of Deployments on kube-apiserver {report['version']} (median of {report['repeat']})"]
    for count, section in report["sizes"].items():
        lines.append(f"\nN = {count} Deployments (created in {section['seed_seconds']} s)")
        lines.append(
            f"  {'variant':38} {'pages':>5} {'items':>6} {'MB':>6} {'request ms':>10} {'decode ms':>9}"
            "  served from: watch cache / etcd LIST, of requests"
        )
        for name, row in section["lists"].items():
            lines.append(
                f"  {name:38} {row['pages']:>5} {row['items'] if row['items'] is not None else '-':>6} "
                f"{row['megabytes']:>6} {row['request_ms']:>10} {row['decode_ms']:>9}  "
                f"{row['from_cache']:g}/{row['from_etcd']:g} of {row['requests']}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lists", description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="variants whose name starts with these")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"repeat": args.repeat, "sizes": {}}
    with ControlPlane.start() as plane, plane.api_client() as api:
        report["version"] = json.loads(get(api, "/version", {}, "application/json"))["gitVersion"]
        created = 0
        for count in sorted(args.deployments):
            seconds = seed(api, created, count)
            created = count
            report["sizes"][count] = {
                "seed_seconds": round(seconds, 1),
                "lists": measure(api, args.repeat, args.only),
            }
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
