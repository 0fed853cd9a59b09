"""The gateway's LISTs: pages of ``LIST_PAGE_SIZE`` followed to the end, and what they keep of an object
(``cluster.slim``), on both API servers: the field sets of our own Apply entry and of status updates are
dropped (nothing that reads LISTs uses them, and they are ~40 % of a listed object), every entry stays,
and another manager's field set is kept whole (adopting GCO's objects reads those)."""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client

from gco_sandbox.objects import WriteOptions
from gco_sandbox.resources import BY_PATH
from gco_tasks.adapters.cluster import LIST_PAGE_SIZE, ClusterGateway, slim
from gco_tasks.core.conventions import FIELD_MANAGER, MANAGED_SELECTOR
from tests.clusters import Cluster

NS = "gco-inference"


def _deployment(name: str) -> dict[str, object]:
    labels = {"app": name, "project": "gco", "gco.io/type": "inference"}
    container = {"name": "server", "image": "vllm/vllm-openai:v0.6.3"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def test_lists_drop_our_own_and_status_field_sets_only(cluster: Cluster) -> None:
    gateway = ClusterGateway(cluster.api_client, NS)
    gateway.apply(_deployment("slim"))
    apps = client.AppsV1Api(cluster.api_client)
    patch = {"metadata": {"annotations": {"someone.else/note": "x"}}}
    apps.patch_namespaced_deployment("slim", NS, patch, field_manager="someone-else")
    deadline = time.monotonic() + 30
    while True:  # until the status writer (controller or stand-in) has written and the object holds still
        raw = json.loads(apps.read_namespaced_deployment("slim", NS, _preload_content=False).data)
        listed = next(
            o
            for o in gateway.list_objects(MANAGED_SELECTOR, ["Deployment"])
            if o["metadata"]["name"] == "slim"
        )
        has_status = any(e.get("subresource") == "status" for e in raw["metadata"]["managedFields"])
        if has_status and listed["metadata"]["resourceVersion"] == raw["metadata"]["resourceVersion"]:
            break
        assert time.monotonic() < deadline, raw["metadata"]["managedFields"]
        time.sleep(0.5)
    entries = {(e["manager"], e.get("subresource", "")): e for e in listed["metadata"]["managedFields"]}
    read = {(e["manager"], e.get("subresource", "")): e for e in raw["metadata"]["managedFields"]}
    assert set(entries) == set(read), "every entry stays"
    for key, entry in entries.items():
        dropped = key == (FIELD_MANAGER, "") or key[1] == "status"
        assert ("fieldsV1" in entry) is not dropped, key
        if not dropped:
            assert entry["fieldsV1"] == read[key]["fieldsV1"]
    assert listed["spec"] == raw["spec"] and listed["status"] == raw["status"]


def test_slim_leaves_an_object_without_managed_fields_alone() -> None:
    assert slim({"kind": "Service", "metadata": {"name": "x"}}) == {
        "kind": "Service",
        "metadata": {"name": "x"},
    }


def test_a_large_list_is_read_page_by_page_to_the_end(apiserver: Any, kube_client: Any) -> None:
    count = 2 * LIST_PAGE_SIZE + 7
    deployments = BY_PATH[("apps", "v1", "deployments")]
    for index in range(count):  # straight into the stand-in's store: creating over HTTP would be slow
        apiserver.store.create(deployments, NS, _deployment(f"many-{index:05d}"), WriteOptions("test"))
    apiserver.counters.reset()
    listed = ClusterGateway(kube_client, NS).list_objects(MANAGED_SELECTOR, ["Deployment"])
    assert sorted(o["metadata"]["name"] for o in listed) == [f"many-{i:05d}" for i in range(count)]
    assert apiserver.stats() == {"list deployments": 3}
