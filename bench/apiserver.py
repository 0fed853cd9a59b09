"""Benchmark of the sandbox Kubernetes API server (a local stand-in, not Kubernetes), through the official
client: GETs per second from one client at 1k and 5k requests (should be flat), creates per second, and
the time to list 10,000 Deployments with limit/continue.

    .venv/bin/python -m bench.apiserver [--deployments 10000] [--page 500]
"""

from __future__ import annotations

import argparse
import json
import time

from kubernetes import client

from gco_sandbox.apiserver import SandboxAPIServer
from gco_sandbox.objects import WriteOptions
from gco_sandbox.resources import BY_PATH

NS = "gco-inference"
DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]


def body(name: str) -> dict[str, object]:
    labels = {"app": name, "project": "gco", "gco.io/type": "inference"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.6"}]},
            },
        },
    }


def gets_per_second(apps: client.AppsV1Api, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        apps.read_namespaced_deployment("bench-0", NS)
    return count / (time.perf_counter() - start)


def creates_per_second(apps: client.AppsV1Api, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        apps.create_namespaced_deployment(NS, body(f"http-{index}"), _preload_content=False)
    return count / (time.perf_counter() - start)


def list_all(apps: client.AppsV1Api, page: int) -> tuple[int, int, float]:
    start = time.perf_counter()
    items, pages, token = 0, 0, None
    while True:
        raw = apps.list_namespaced_deployment(NS, limit=page, _continue=token, _preload_content=False)
        data = json.loads(raw.data)
        items += len(data["items"])
        pages += 1
        token = data["metadata"].get("continue")
        if not token:
            return items, pages, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=500)
    args = parser.parse_args()
    with SandboxAPIServer(port=0, ready_delay=0.0) as server:
        apps = client.AppsV1Api(client.ApiClient(client.Configuration(host=server.url)))
        apps.create_namespaced_deployment(NS, body("bench-0"))
        for count in (1_000, 5_000):
            print(f"GET deployment x{count}: {gets_per_second(apps, count):,.0f} GETs/s (typed client)")
        print(f"create deployment x1000 over HTTP: {creates_per_second(apps, 1_000):,.0f} creates/s")
        start = time.perf_counter()
        for index in range(1, args.deployments - 1_000):
            server.store.create(DEPLOYMENTS, NS, body(f"bench-{index}"),
                                WriteOptions("bench"))  # fmt: skip
        print(f"seeded to {args.deployments} deployments in-process in {time.perf_counter() - start:.1f}s")
        items, pages, seconds = list_all(apps, args.page)
        print(f"list {items} deployments, limit={args.page}: {pages} pages in {seconds:.2f}s")
        typed_start = time.perf_counter()
        token, typed = None, 0
        while True:
            page = apps.list_namespaced_deployment(NS, limit=args.page, _continue=token)
            typed += len(page.items)
            token = page.metadata._continue
            if not token:
                break
        print(
            f"list {typed} deployments typed (client deserialises): {time.perf_counter() - typed_start:.2f}s"
        )
        selected = apps.list_namespaced_deployment(NS, label_selector="app=bench-42", _preload_content=False)
        print(f"label-selected list among {items}: {len(json.loads(selected.data)['items'])} item")


if __name__ == "__main__":
    main()
