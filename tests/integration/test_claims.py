"""A record cannot take what is not its own, on both servers.

- An object with the name the fleet would give (``Deployment/demo``) that exists without our labels,
  made by someone else, is not overwritten: server-side apply with force would take it over, fields
  and all. The endpoint's status says which object and what to do; nothing of it is created.
- Two endpoints whose ingress paths equal or shadow each other (by path segments) on the region's
  shared load balancer: the younger record is refused with a status naming the older, whichever way
  the reconcile is reached (the fan-out's cycle, or an ad hoc call that reads the table itself).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.controlplane import raw
from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.records import Endpoint
from gco_tasks.core.triage import resync_cycles, resync_due
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, converge, run_cycle, wait_for

NAMESPACE = "gco-inference"


def create(fleet: Fleet, name: str, created_at: str, path: str | None = None) -> None:
    item: dict[str, Any] = {
        "endpoint_name": name,
        "desired_state": "deploying",
        "target_regions": [REGION],
        "namespace": NAMESPACE,
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "replicas": 1},
        "created_at": created_at,
        "updated_at": created_at,
        "region_status": {},
    }
    if path is not None:
        item["ingress_path"] = path
    fleet.store.create(Endpoint.from_item(item))


def status(fleet: Fleet, name: str) -> dict[str, Any]:
    return dict(((fleet.store.get_item(name) or {}).get("region_status") or {}).get(REGION) or {})


def someone_elses_deployment(name: str) -> dict[str, Any]:
    """A Deployment made by hand with ``kubectl create``: our name, none of our labels."""
    labels = {"app": name, "team": "research"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "notebook", "image": "jupyter/base-notebook:2024-06-01"}]},
            },
        },
    }


@pytest.fixture()
def demo_by_hand(cluster: Cluster) -> Iterator[dict[str, Any]]:
    """Someone else's ``Deployment/demo`` (as created, a plain dict), deleted when the test ends however
    it ends: a leftover without our labels would make a later test that deploys ``demo`` fail for the
    wrong reason (the real server's reset removes it too)."""
    apps = client.AppsV1Api(cluster.api_client)
    created = raw(
        apps.create_namespaced_deployment,
        NAMESPACE,
        someone_elses_deployment("demo"),
        field_manager="kubectl-create",
    )
    try:
        yield created
    finally:
        try:
            raw(apps.delete_namespaced_deployment, "demo", NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:  # the test moved it out of the way itself
                raise


def test_an_object_of_our_name_made_by_someone_else_is_refused_not_taken_over(
    fleet: Fleet, cluster: Cluster, demo_by_hand: dict[str, Any]
) -> None:
    apps = client.AppsV1Api(cluster.api_client)
    before = demo_by_hand
    create(fleet, "demo", "2026-11-01T00:00:00+00:00")
    results = run_cycle(fleet)
    assert [r["result"] for r in results] == ["error"] and results[0]["actions"] == []
    report = status(fleet, "demo")
    assert report["state"] == "error"
    assert report["error"].startswith(
        "Deployment/demo already exists in namespace gco-inference and is not this"
    )
    assert "written by " in report["error"] and "kubectl-create" in report["error"]
    after = raw(apps.read_namespaced_deployment, "demo", NAMESPACE)
    # Not overwritten: same spec generation and labels, and the fleet never wrote to it (controllers
    # of the real server update its status, so its resourceVersion moves).
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert "gco-tasks" not in {entry["manager"] for entry in after["metadata"]["managedFields"]}
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "jupyter/base-notebook:2024-06-01"
    # What the reconcile created beside the refused Deployment (sent together) it deleted again, in the
    # foreground: on the real server a Service stays, terminating, until the garbage collector has
    # deleted the EndpointSlice its controller made for it meanwhile.
    left = fleet.cluster.list_objects(endpoint_selector("demo"))
    assert all(obj["metadata"].get("deletionTimestamp") for obj in left), "deleted again, not kept"
    wait_for(
        lambda: fleet.cluster.list_objects(endpoint_selector("demo")) == [],
        "nothing of the endpoint left",
        timeout=30,
    )

    raw(apps.delete_namespaced_deployment, "demo", NAMESPACE)  # its owner moves it out of the way
    # An error about the record as it is now is looked at again at the endpoint's resync slot (or at
    # once by an ad hoc reconcile), not every cycle: the fan-out cannot see an object without our labels.
    run_cycle(fleet, now=next_resync_slot(fleet, "demo", time.time()))
    converge(fleet, lambda: status(fleet, "demo").get("state") == "running")


def next_resync_slot(fleet: Fleet, name: str, now: float) -> float:
    """The first cycle at or after ``now`` that is ``name``'s periodic resync (``triage.resync_due``)."""
    interval = fleet.settings.reconcile_interval_seconds
    cycles = resync_cycles(fleet.settings.status_heartbeat_seconds, interval)
    moment = now
    while not resync_due(name, moment, interval, cycles):
        moment += interval
    return moment


def test_a_younger_path_that_shadows_an_older_one_is_refused_naming_it(fleet: Fleet) -> None:
    create(fleet, "alpha", "2026-11-01T00:00:00+00:00", "/inference/shared")
    create(fleet, "beta", "2026-11-02T00:00:00+00:00", "/inference/shared/v2")
    create(fleet, "gamma", "2026-11-03T00:00:00+00:00", "/inference/sharedx")
    converge(
        fleet,
        lambda: (
            status(fleet, "alpha").get("state") == "running"
            and status(fleet, "gamma").get("state") == "running"
        ),
    )
    report = status(fleet, "beta")
    assert report["state"] == "error"
    assert report["error"].startswith("ingress_path: '/inference/shared/v2' equals or overlaps")
    assert "of endpoint 'alpha', which asked for it first" in report["error"]
    assert fleet.cluster.list_objects(endpoint_selector("beta")) == []

    fleet.store.client.delete_item(TableName=fleet.store.table_name, Key={"endpoint_name": {"S": "beta"}})
    create(fleet, "beta", "2026-11-02T00:00:00+00:00", "/inference/shared")  # equal, not under: the same
    ad_hoc = reconcile(fleet, "beta")  # no snapshot: the reconciler scans the region itself
    assert (ad_hoc.kind.value, ad_hoc.applied) == ("invalid", ())
    assert "of endpoint 'alpha', which asked for it first" in (ad_hoc.error or "")
    assert fleet.cluster.list_objects(endpoint_selector("beta")) == []


def count_scans(fleet: Fleet) -> list[str]:
    """The fleet's DynamoDB Scans from now on (botocore's own event hook on its client)."""
    scans: list[str] = []
    fleet.store.client.meta.events.register("before-call.dynamodb.Scan", lambda **_: scans.append("Scan"))
    return scans


def test_an_ad_hoc_reconcile_scans_only_for_a_path_its_ingress_does_not_hold(fleet: Fleet) -> None:
    """The CLI's nudge, the stream reader and the watchdog send no fan-out verdict: a reconcile whose own
    Ingress already routes its path needs no Scan (a change of 10,000 images through the stream costs
    none); one whose path is new to the cluster, or whose last report refused its path, scans."""
    create(fleet, "alpha", "2026-11-01T00:00:00+00:00", "/inference/alpha")
    create(fleet, "beta", "2026-11-02T00:00:00+00:00", "/inference/beta")
    converge(
        fleet, lambda: status(fleet, "alpha").get("state") == status(fleet, "beta").get("state") == "running"
    )
    scans = count_scans(fleet)
    assert reconcile(fleet, "beta").kind.value != "invalid"
    assert scans == [], "a path the endpoint's own Ingress routes was checked with a Scan"

    fleet.store.client.update_item(  # the older record moves onto the younger's path: it is refused
        TableName=fleet.store.table_name,
        Key={"endpoint_name": {"S": "alpha"}},
        UpdateExpression="SET ingress_path = :path, updated_at = :now",
        ExpressionAttributeValues={
            ":path": {"S": "/inference/beta"},
            ":now": {"S": "2026-11-05T00:00:00+00:00"},
        },
    )
    converge(
        fleet,
        lambda: "of endpoint 'beta', which asked for it first" in (status(fleet, "alpha").get("error") or ""),
    )
    assert status(fleet, "beta").get("state") == "running", "a path already held stays with its holder"
    # The fleet's record of seniority says alpha asked first (as after a Redis loss, or a race): beta's
    # Ingress still routes the path, but its last report refused it, so an ad hoc reconcile looks again.
    redis_client = fleet.state.client
    redis_client.hset(fleet.state.keys.path_first_seen, "alpha", "1.0 /inference/beta")
    converge(
        fleet,
        lambda: "of endpoint 'alpha', which asked for it first" in (status(fleet, "beta").get("error") or ""),
    )
    scans.clear()
    again = reconcile(fleet, "beta")  # its Ingress still routes the path, but its last report refused it
    assert again.kind.value == "invalid"
    assert "of endpoint 'alpha', which asked for it first" in (again.error or "")
    assert scans, "a refused path was taken as held without looking at the table"


@pytest.mark.real_only
def test_the_real_servers_reset_removes_what_a_test_made_by_hand(cluster: Cluster) -> None:
    """Objects without our labels (a hand-made Deployment, its pods, a Service) and Events are gone after
    the reset, so no later test meets them."""
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)
    raw(apps.create_namespaced_deployment, NAMESPACE, someone_elses_deployment("demo"))
    service = {"metadata": {"name": "demo"}, "spec": {"ports": [{"port": 80}]}}
    raw(core.create_namespaced_service, NAMESPACE, service)
    deadline = time.monotonic() + 60
    while not raw(core.list_namespaced_pod, NAMESPACE)["items"]:
        assert time.monotonic() < deadline, "the hand-made Deployment's pod never came"
        time.sleep(0.2)
    cluster.reset()
    left = {
        "deployments": raw(apps.list_namespaced_deployment, NAMESPACE)["items"],
        "replicasets": raw(apps.list_namespaced_replica_set, NAMESPACE)["items"],
        "pods": raw(core.list_namespaced_pod, NAMESPACE)["items"],
        "services": raw(core.list_namespaced_service, NAMESPACE)["items"],
    }
    assert {kind: [i["metadata"]["name"] for i in items] for kind, items in left.items() if items} == {}


def test_a_backdated_record_cannot_take_a_path_another_holds(fleet: Fleet) -> None:
    """Issue 22, finding 4: seniority came from ``created_at``, which the record's author writes: a record
    backdated to 1970 took ``/inference/victim`` (on main the victim read ``error`` and lost its route).
    Seniority is now when the fleet first saw each record ask for its path, on the fleet's clock: the
    thief is refused naming the victim, through the fan-out and through an ad hoc reconcile, and the
    victim keeps its path while stopped too."""
    create(fleet, "victim", "2026-11-01T00:00:00+00:00")
    converge(fleet, lambda: status(fleet, "victim").get("state") == "running")
    fleet.store.update_desired_state("victim", "stopped")  # no Ingress now: the path is still its own
    converge(fleet, lambda: status(fleet, "victim").get("state") == "stopped")
    create(fleet, "thief", "1970-01-01T00:00:00+00:00", "/inference/victim")
    ad_hoc = reconcile(fleet, "thief")  # no fan-out verdict: the reconciler scans the region itself
    assert ad_hoc.kind.value == "invalid" and "of endpoint 'victim'" in (ad_hoc.error or "")
    run_cycle(fleet)
    assert "of endpoint 'victim', which asked for it first" in (status(fleet, "thief").get("error") or "")
    assert fleet.cluster.list_objects(endpoint_selector("thief")) == []
    fleet.store.update_desired_state("victim", "running")
    converge(fleet, lambda: status(fleet, "victim").get("state") == "running")
    ingress = next(
        o for o in fleet.cluster.list_objects(endpoint_selector("victim")) if o["kind"] == "Ingress"
    )
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["backend"]["service"]["name"]) == ("/inference/victim", "victim")
    assert status(fleet, "thief").get("state") == "error"
    # Redis loses the fleet's record of seniority: the endpoint whose Ingress serves the path keeps it
    # (first seen as of its Ingress's creation, which the API server sets), though 'thief' < 'victim'.
    fleet.state.client.delete(fleet.state.keys.path_first_seen)
    results = {r["endpoint"]: r for r in run_cycle(fleet, now=time.time() + 3600)}
    assert "of endpoint 'victim'" in (status(fleet, "thief").get("error") or ""), results
    assert status(fleet, "victim").get("state") == "running"
