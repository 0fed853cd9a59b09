"""The sandbox API server's object store without HTTP: readiness simulation on a fake clock, dry-run,
pagination and namespaces (the store is part of a local stand-in for Kubernetes)."""

from __future__ import annotations

from typing import Any

import pytest

from gco_sandbox.objects import ApiError, WriteOptions
from gco_sandbox.resources import BY_PATH, NAMESPACES
from gco_sandbox.simulation import settled_status
from gco_sandbox.store import Store

DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]
NS = "gco-inference"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def body(name: str = "d", replicas: int = 2, image: str = "img") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(clock: Clock) -> Store:
    return Store(validator=None, ready_delay=1.0, clock=clock)


def test_readiness_arrives_after_the_delay(store: Store, clock: Clock) -> None:
    store.create(DEPLOYMENTS, NS, body(), WriteOptions("t"))
    clock.now += 0.99
    assert store.get(DEPLOYMENTS, NS, "d")["status"] == {}
    clock.now += 0.02
    status = store.get(DEPLOYMENTS, NS, "d")["status"]
    assert (status["readyReplicas"], status["observedGeneration"]) == (2, 1)


def test_a_new_spec_restarts_the_clock(store: Store, clock: Clock) -> None:
    store.create(DEPLOYMENTS, NS, body(), WriteOptions("t"))
    clock.now += 0.5
    store.patch(DEPLOYMENTS, NS, "d", "merge", {"spec": {"replicas": 4}}, WriteOptions("t"))
    clock.now += 0.6
    assert store.get(DEPLOYMENTS, NS, "d")["status"] == {}  # the first schedule was superseded
    clock.now += 0.5
    assert store.get(DEPLOYMENTS, NS, "d")["status"]["readyReplicas"] == 4


def test_settled_status_rules() -> None:
    deployment = {**body(replicas=2), "metadata": {"name": "d", "generation": 3}}
    assert settled_status(deployment, "crashloop", "t")["readyReplicas"] == 2
    crashing = {**deployment, "spec": body(image="x/crashloop:1")["spec"]}
    assert "readyReplicas" not in settled_status(crashing, "crashloop", "t")
    zero = {**deployment, "spec": {**deployment["spec"], "replicas": 0}}
    status = settled_status(zero, "crashloop", "t")
    assert "readyReplicas" not in status and "replicas" not in status and status["observedGeneration"] == 3


def test_dry_run_and_pagination(store: Store) -> None:
    store.create(DEPLOYMENTS, NS, body("x"), WriteOptions("t", dry_run=True))
    assert store.list_objects(DEPLOYMENTS, NS)["items"] == []
    for index in range(5):
        store.create(DEPLOYMENTS, NS, body(f"d{index}"), WriteOptions("t"))
    first = store.list_objects(DEPLOYMENTS, NS, limit=2)
    second = store.list_objects(DEPLOYMENTS, NS, limit=2, continue_token=first["metadata"]["continue"])
    third = store.list_objects(DEPLOYMENTS, NS, limit=2, continue_token=second["metadata"]["continue"])
    names = [d["metadata"]["name"] for page in (first, second, third) for d in page["items"]]
    assert names == [f"d{index}" for index in range(5)] and "continue" not in third["metadata"]
    with pytest.raises(ApiError) as bad:
        store.list_objects(DEPLOYMENTS, NS, continue_token="garbage!")
    assert bad.value.code == 400


def test_deleting_a_namespace_deletes_its_objects(store: Store) -> None:
    store.create(NAMESPACES, "", {"metadata": {"name": "tmp"}}, WriteOptions("t"))
    store.create(DEPLOYMENTS, "tmp", body(), WriteOptions("t"))
    store.delete(NAMESPACES, "", "tmp", WriteOptions("t"))
    with pytest.raises(ApiError) as missing:
        store.create(DEPLOYMENTS, "tmp", body(), WriteOptions("t"))
    assert missing.value.code == 404
    assert store.list_objects(DEPLOYMENTS, None)["items"] == []


def test_reset_keeps_only_the_initial_namespaces(store: Store) -> None:
    store.create(DEPLOYMENTS, NS, body(), WriteOptions("t"))
    store.reset()
    dump = store.dump()
    assert [n["metadata"]["name"] for n in dump["namespaces"]] == [
        "default",
        "gco-inference",
        "gco-system",
        "kube-system",
    ]
    assert dump["deployments"] == []


def test_stored_objects_are_never_mutated(store: Store) -> None:
    created = store.create(DEPLOYMENTS, NS, body(), WriteOptions("t"))
    snapshot = repr(created)
    store.patch(DEPLOYMENTS, NS, "d", "merge", {"status": {"readyReplicas": 1}}, WriteOptions("t"), "status")
    store.replace(DEPLOYMENTS, NS, "d", {**body(), "status": {"replicas": 1}}, WriteOptions("t"), "status")
    store.patch(DEPLOYMENTS, NS, "d", "strategic", {"spec": {"replicas": 3}}, WriteOptions("t"))
    store.apply(DEPLOYMENTS, NS, "d", body(replicas=4), WriteOptions("m", force=True))
    assert repr(created) == snapshot
