"""A reconcile message hints, it never decides: crafted messages published to the region's queue with
``send_task`` (as anyone holding the Redis password, or a Flower user, could) reach a real Celery worker
(Celery's in-process worker on a private redis-server) and change nothing the table does not say.

Forged: a record with another image and env and a future ``taken_at``; digests claiming drift, claiming
readiness, naming objects to delete (someone else's Service with our canary's name, a Deployment of no
endpoint); a record for a name the table does not have. Replayed: an old message from before a spec
change. And the fan-out's own messages carry no record at all, so no env value travels in a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from kubernetes import client

from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import desired_objects
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.observe import candidate_keys, read_digests
from gco_tasks.worker.app import app
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.process import use_fleet
from tests.clusters import Cluster

from .harness import REGION, converge

NAMESPACE = "gco-inference"
TASK = "gco_tasks.reconcile_endpoint"
SECRET = "s3cr3t-value-never-in-a-message"


@pytest.fixture()
def worker(fleet: Fleet, redis_url: str) -> Iterator[Any]:
    saved = {key: app.conf.get(key) for key in ("broker_url", "result_backend", "redbeat_redis_url")}
    app.conf.update(broker_url=redis_url, result_backend=redis_url, redbeat_redis_url=redis_url)
    use_fleet(fleet)
    try:
        with start_worker(
            app, pool="threads", concurrency=2, queues=[fleet.settings.queue], perform_ping_check=False
        ) as running:
            yield running
    finally:
        use_fleet(None)
        app.conf.update(saved)


def deploy_and_settle(fleet: Fleet) -> dict[str, Any]:
    spec = {"image": "nginx:1.27", "gpu_count": 0, "env": {"TOKEN": SECRET}}
    fleet.store.create(Endpoint.new("victim", parse_spec(spec), [REGION]))
    converge(fleet, lambda: state(fleet) == "running")
    item = fleet.store.get_item("victim")
    assert item is not None
    return item


def state(fleet: Fleet) -> str | None:
    item = fleet.store.get_item("victim") or {}
    return (item.get("region_status", {}).get(REGION) or {}).get("state")


def send(fleet: Fleet, name: str, hint: dict[str, Any], argument: str = "hint") -> dict[str, Any]:
    """Publish a crafted reconcile message and wait for the worker's result (``argument="snapshot"``: the
    name older fan-outs sent the hint under)."""
    result = app.send_task(TASK, args=[name], kwargs={argument: hint}, queue=fleet.settings.queue)
    outcome: dict[str, Any] = result.get(timeout=60)
    return outcome


def live_deployment(cluster: Cluster, name: str = "victim") -> Any:
    return client.AppsV1Api(cluster.api_client).read_namespaced_deployment(name, NAMESPACE)


def as_the_fan_out_saw(fleet: Fleet, item: dict[str, Any], **claims: dict[str, Any]) -> list[dict[str, Any]]:
    """The digests of victim's live objects as a genuine message carries them (a forger can copy one),
    with ``claims`` (by ``Kind/name``) put in their place: only the forged part can then cause anything."""
    desired = desired_objects(Endpoint.from_item(item), REGION, fleet.render_options)
    seen = read_digests(fleet.cluster, candidate_keys("victim"), "victim", desired)
    digests = {f"{o.kind}/{o.name}": o.model_dump(exclude_defaults=True) for o in seen}
    return list({**digests, **claims}.values())


def forged_record(item: dict[str, Any]) -> dict[str, Any]:
    spec = {**item["spec"], "image": "evil.example/miner:latest", "env": {"PWNED": "1"}, "replicas": 7}
    return {**item, "spec": spec}


def test_a_forged_future_dated_message_changes_nothing(fleet: Fleet, cluster: Cluster, worker: Any) -> None:
    item = deploy_and_settle(fleet)
    before = live_deployment(cluster)
    snapshot = {
        "taken_at": time.time() + 3600,  # the future: always fresh, once
        "item": forged_record(item),
        "observed": as_the_fan_out_saw(
            fleet,
            item,
            **{
                "Deployment/victim": {
                    "kind": "Deployment",
                    "name": "victim",
                    "desired_hash": "x",
                    "drift": ["spec"],
                }
            },
        ),
    }
    outcome = send(fleet, "victim", snapshot)
    assert outcome["actions"] == [], outcome  # the table and the cluster agree: nothing to do
    after = live_deployment(cluster)
    container = after.spec.template.spec.containers[0]
    assert container.image == "nginx:1.27" and after.spec.replicas == 1
    assert [(e.name, e.value) for e in container.env] == [("TOKEN", SECRET)]
    assert after.metadata.generation == before.metadata.generation, outcome
    assert fleet.store.get_item("victim") == {
        **item,
        "region_status": fleet.store.get_item("victim")["region_status"],
    }
    assert fleet.store.get("victim").spec.image == "nginx:1.27"


def test_forged_digests_can_neither_delete_nor_report_readiness(
    fleet: Fleet, cluster: Cluster, worker: Any
) -> None:
    """Digests naming objects that exist but are not ours (someone else's Service with our canary's name,
    a Deployment of no endpoint) delete nothing and cause no action; a digest claiming readiness does not
    make a region running that is not."""
    item = deploy_and_settle(fleet)
    apps, core = client.AppsV1Api(cluster.api_client), client.CoreV1Api(cluster.api_client)
    theirs = {
        "metadata": {"name": "victim-canary", "labels": {"team": "other"}},
        "spec": {"ports": [{"port": 80}]},
    }
    core.create_namespaced_service(NAMESPACE, theirs)
    apps.create_namespaced_deployment(NAMESPACE, not_an_endpoint("coredns"))
    claims = {
        "taken_at": time.time(),
        "observed": as_the_fan_out_saw(
            fleet,
            item,
            **{
                # only has our canary's name
                "Service/victim-canary": {"kind": "Service", "name": "victim-canary", "drift": ["spec"]},
                # no endpoint's name at all
                "Deployment/coredns": {"kind": "Deployment", "name": "coredns", "drift": ["spec"]},
            },
        ),
    }
    outcome = send(fleet, "victim", claims)
    assert outcome["actions"] == [], outcome
    assert core.read_namespaced_service("victim-canary", NAMESPACE).metadata.labels == {"team": "other"}
    assert apps.read_namespaced_deployment("coredns", NAMESPACE).metadata.labels == {"app": "coredns"}

    fleet.store.scale("victim", 2)  # the region is not running at 2 yet
    ready = {
        "taken_at": time.time(),
        "observed": [
            {
                "kind": "Deployment",
                "name": "victim",
                "replicas": 2,
                "ready_replicas": 99,
                "updated_replicas": 99,
            },
            {"kind": "Service", "name": "victim-canary"},
            {"kind": "Deployment", "name": "coredns"},
        ],
    }
    outcome = send(fleet, "victim", ready)
    assert not [action for action in outcome["actions"] if action.startswith("delete")], outcome
    assert core.read_namespaced_service("victim-canary", NAMESPACE).metadata.labels == {"team": "other"}
    assert apps.read_namespaced_deployment("coredns", NAMESPACE).metadata.labels == {"app": "coredns"}
    status = (fleet.store.get_item("victim") or {})["region_status"][REGION]
    assert status["replicas_ready"] <= 2 and status["state"] != "running", status


def not_an_endpoint(name: str) -> dict[str, Any]:
    """A Deployment of no endpoint (none of our labels), as another team's ``kubectl create`` makes it."""
    labels = {"app": name}
    container = {"name": name, "image": "registry.k8s.io/coredns/coredns:v1.11.1"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def test_a_message_for_a_name_the_table_does_not_have_creates_nothing(
    fleet: Fleet, cluster: Cluster, worker: Any
) -> None:
    item = deploy_and_settle(fleet)
    ghost = {**forged_record(item), "endpoint_name": "ghost"}
    outcome = send(fleet, "ghost", {"taken_at": time.time(), "item": ghost, "observed": []})
    assert outcome["actions"] == [], outcome
    assert fleet.store.get_item("ghost") is None
    names = [
        d.metadata.name
        for d in client.AppsV1Api(cluster.api_client).list_namespaced_deployment(NAMESPACE).items
    ]
    assert "ghost" not in names


def test_a_replayed_old_message_applies_what_the_table_says_now(
    fleet: Fleet, cluster: Cluster, worker: Any
) -> None:
    item = deploy_and_settle(fleet)
    captured: list[dict[str, Any]] = []
    fleet.store.update_spec("victim", lambda spec: spec.with_changes(image="nginx:1.28"))
    fan_out(fleet, lambda name, hint: captured.append(json.loads(json.dumps(hint and hint.as_message()))))
    assert captured, "the spec change is sent"
    send(fleet, "victim", captured[0])
    assert live_deployment(cluster).spec.template.spec.containers[0].image == "nginx:1.28"
    old = {"taken_at": time.time() - 600, "item": item, "observed": []}  # from before the change
    send(fleet, "victim", old, argument="snapshot")  # as an older fan-out sent it
    assert live_deployment(cluster).spec.template.spec.containers[0].image == "nginx:1.28"


def test_the_fan_outs_messages_carry_no_record_and_no_env_value(fleet: Fleet) -> None:
    spec = {"image": "nginx:1.27", "gpu_count": 0, "env": {"TOKEN": SECRET}}
    fleet.store.create(Endpoint.new("victim", parse_spec(spec), [REGION]))
    messages: list[tuple[str, dict[str, Any]]] = []
    fan_out(fleet, lambda name, hint: messages.append((name, hint.as_message() if hint else {})))
    assert [name for name, _ in messages] == ["victim"]
    body = json.dumps(messages)
    assert SECRET not in body and "TOKEN" not in body and '"spec"' not in body and '"item"' not in body
    assert set(messages[0][1]) <= {"taken_at", "observed", "updated_at", "reason"}
