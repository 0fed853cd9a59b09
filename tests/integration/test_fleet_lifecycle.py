"""The whole lifecycle of an endpoint through the fleet's operations, against the real parts: a private
redis-server, moto's DynamoDB over HTTP and, through the official client, each API server in turn: the
stand-in and the real control plane (``[standin]`` / ``[real]``, see ``tests/clusters.py``). The one
test marked ``standin_only`` reads the stand-in's own request counters; the same cost is checked on both
servers from the client's side."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gco_tasks.core.conventions import WEIGHTED_ROUTING_ANNOTATION, endpoint_selector
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.purge import purge
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet

from .harness import REGION, DynamoWrites, RequestLog, converge, reported_state, run_cycle, wait_for

CANARY_IMAGE = "vllm/vllm-openai:v0.7.0"
CANARY_OBJECTS = {("Deployment", "demo-canary"), ("Service", "demo-canary")}


def objects(fleet: Fleet, name: str = "demo") -> dict[tuple[str, str], dict[str, Any]]:
    found = fleet.cluster.list_objects(endpoint_selector(name))
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in found}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def region_state(fleet: Fleet, name: str = "demo") -> dict[str, Any]:
    item = fleet.store.get_item(name)
    assert item is not None
    return dict(item["region_status"].get(REGION, {}))


def deploy(fleet: Fleet, name: str = "demo", regions: list[str] | None = None, **spec: Any) -> None:
    fields = {"image": "vllm/vllm-openai:v0.6.3", "replicas": 1, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), regions or [REGION]))


def running(fleet: Fleet, name: str = "demo") -> bool:
    return region_state(fleet, name).get("state") == "running"


def edit(fleet: Fleet, name: str = "demo", **changes: Any) -> None:
    fleet.store.update_spec(name, lambda spec: spec.with_changes(**changes))


def test_deploy_reaches_running_and_promotes(fleet: Fleet) -> None:
    deploy(fleet)
    first = run_cycle(fleet)
    assert first[0]["state"] == "creating"
    assert set(objects(fleet)) == {("Deployment", "demo"), ("Service", "demo"), ("Ingress", "inference-demo")}
    converge(fleet, lambda: running(fleet))
    status = region_state(fleet)
    assert (status["replicas_ready"], status["replicas_desired"]) == (1, 1)
    record = fleet.store.get("demo")
    assert record.desired_state == "running"


def settle_two_endpoints(fleet: Fleet) -> None:
    """One endpoint with a canary and one without, running, and the promotion's write seen."""
    deploy(fleet, canary={"image": CANARY_IMAGE, "weight": 20})
    deploy(fleet, "other")
    converge(fleet, lambda: running(fleet) and running(fleet, "other"))
    run_cycle(fleet)  # the promotion's write is seen by one more cycle


def test_steady_state_costs_four_lists_and_no_writes(
    fleet: Fleet, dynamo_writes: DynamoWrites, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle_two_endpoints(fleet)
    requests = RequestLog(fleet, monkeypatch)
    dynamo_writes.calls.clear()
    results = run_cycle(fleet)
    assert all(result["actions"] == [] for result in results), results
    assert requests.writes() == {}
    assert sum(requests.calls.values()) == 4, requests.calls  # one LIST per managed kind
    assert dynamo_writes.calls == []


@pytest.mark.standin_only  # the stand-in's own request counters (/_sandbox/stats)
def test_steady_state_costs_no_writes_by_the_standins_counters(
    fleet: Fleet, apiserver: Any, dynamo_writes: DynamoWrites
) -> None:
    settle_two_endpoints(fleet)
    apiserver.counters.reset()
    dynamo_writes.calls.clear()
    results = run_cycle(fleet)
    assert all(result["actions"] == [] for result in results), results
    stats = apiserver.stats()
    writes = {
        key: n
        for key, n in stats.items()
        if key.split()[0] in ("create", "update", "patch", "apply", "delete")
    }
    assert writes == {}
    assert dynamo_writes.calls == []
    assert sum(n for key, n in stats.items() if key.startswith("list ")) == 4


def test_scale_image_and_env_changes_reach_the_deployment(fleet: Fleet) -> None:
    deploy(fleet)
    converge(fleet, lambda: running(fleet))
    fleet.store.scale("demo", 3)
    edit(fleet, image="vllm/vllm-openai:v0.6.4", env={"LOG_LEVEL": "debug"}, port=8080)
    run_cycle(fleet)
    deployment = objects(fleet)[("Deployment", "demo")]
    assert deployment["spec"]["replicas"] == 3
    main = container(deployment)
    assert main["image"] == "vllm/vllm-openai:v0.6.4"
    assert {"name": "LOG_LEVEL", "value": "debug"} in main["env"]
    assert main["ports"][0]["containerPort"] == 8080
    service = objects(fleet)[("Service", "demo")]
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    converge(fleet, lambda: running(fleet) and region_state(fleet)["replicas_ready"] == 3)


def test_canary_then_promote(fleet: Fleet) -> None:
    deploy(fleet)
    converge(fleet, lambda: running(fleet))
    edit(fleet, canary={"image": CANARY_IMAGE, "weight": 20, "replicas": 1})
    run_cycle(fleet)
    live = objects(fleet)
    assert ("Deployment", "demo-canary") in live and ("Service", "demo-canary") in live
    assert container(live[("Deployment", "demo-canary")])["image"] == CANARY_IMAGE
    routing = json.loads(
        live[("Ingress", "inference-demo")]["metadata"]["annotations"][WEIGHTED_ROUTING_ANNOTATION]
    )
    weights = {group["serviceName"]: group["weight"] for group in routing["forwardConfig"]["targetGroups"]}
    assert weights == {"demo": 80, "demo-canary": 20}
    edit(fleet, image=CANARY_IMAGE, canary=None)  # promote: the canary's image becomes the primary's
    run_cycle(fleet)
    # Deleted in the foreground: the Deployment stays until its pods are gone, the Service until the
    # garbage collector has removed its EndpointSlices.
    wait_for(
        lambda: not CANARY_OBJECTS & set(objects(fleet)),
        "the canary's objects, pods and EndpointSlices to go",
    )
    live = objects(fleet)
    assert container(live[("Deployment", "demo")])["image"] == CANARY_IMAGE
    assert_primary_only_ingress(live[("Ingress", "inference-demo")])


def assert_primary_only_ingress(ingress: dict[str, Any]) -> None:
    annotations = ingress["metadata"].get("annotations") or {}
    assert WEIGHTED_ROUTING_ANNOTATION not in annotations
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "demo"


def test_canary_then_rollback_leaves_primary_only_ingress(fleet: Fleet) -> None:
    deploy(fleet, canary={"image": CANARY_IMAGE, "weight": 20})
    run_cycle(fleet)
    assert ("Deployment", "demo-canary") in objects(fleet)
    edit(fleet, canary=None)
    run_cycle(fleet)
    wait_for(lambda: not CANARY_OBJECTS & set(objects(fleet)), "the canary's objects to go (foreground)")
    live = objects(fleet)
    assert container(live[("Deployment", "demo")])["image"] == "vllm/vllm-openai:v0.6.3"
    assert_primary_only_ingress(live[("Ingress", "inference-demo")])


def test_stop_then_start_with_one_replica(fleet: Fleet) -> None:
    deploy(fleet, canary={"image": CANARY_IMAGE, "weight": 10})
    converge(fleet, lambda: running(fleet))
    fleet.store.update_desired_state("demo", "stopped")
    results = run_cycle(fleet)
    assert results[0]["state"] == "stopped"
    wait_for(lambda: not CANARY_OBJECTS & set(objects(fleet)), "the canary's objects to go (foreground)")
    live = objects(fleet)
    assert live[("Deployment", "demo")]["spec"]["replicas"] == 0
    assert set(live) == {("Deployment", "demo"), ("Service", "demo")}
    assert region_state(fleet)["state"] == "stopped"
    fleet.store.update_desired_state("demo", "deploying")  # GCO's `start`
    run_cycle(fleet)
    assert objects(fleet)[("Deployment", "demo")]["spec"]["replicas"] == 1
    converge(fleet, lambda: running(fleet) and region_state(fleet)["replicas_ready"] == 1)


def test_delete_then_purge(fleet: Fleet) -> None:
    deploy(fleet, autoscaling={"enabled": True, "min_replicas": 1, "max_replicas": 3})
    run_cycle(fleet)
    assert ("HorizontalPodAutoscaler", "demo") in objects(fleet)
    fleet.store.update_desired_state("demo", "deleted")
    assert purge(fleet).purged == []  # not yet reported deleted
    results = run_cycle(fleet)
    assert results[0]["state"] == "deleting"  # deleted now; "deleted" once the next LIST finds nothing
    assert purge(fleet).purged == []
    converge(fleet, lambda: region_state(fleet)["state"] == "deleted")
    assert objects(fleet) == {}
    assert run_cycle(fleet) == []  # settled: nothing left to send
    assert purge(fleet).purged == ["demo"]
    assert fleet.store.get_item("demo") is None


def test_region_removed_from_targets_is_cleaned_there(fleet: Fleet) -> None:
    deploy(fleet, regions=[REGION, "eu-west-1"])
    converge(fleet, lambda: running(fleet))
    item = fleet.store.get_item("demo")
    assert item is not None and REGION in item["region_status"]
    item["target_regions"] = ["eu-west-1"]
    fleet.store.client.put_item(TableName=fleet.store.table_name, Item=_typed(item))
    run_cycle(fleet)  # deletes; the entry goes once a LIST finds nothing left (pods may still terminate)
    converge(fleet, lambda: REGION not in (fleet.store.get_item("demo") or {})["region_status"])
    assert objects(fleet) == {}


def _typed(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in item.items()}


def test_orphans_are_removed_but_invalid_records_keep_their_objects(fleet: Fleet) -> None:
    deploy(fleet)
    deploy(fleet, "broken")
    run_cycle(fleet)
    assert objects(fleet, "broken")
    # A record turned malformed: error status, objects left alone.
    item = fleet.store.get_item("broken")
    assert item is not None
    item["spec"]["replicas"] = -4
    fleet.store.client.put_item(TableName=fleet.store.table_name, Item=_typed(item))
    results = {r["endpoint"]: r for r in run_cycle(fleet)}
    assert results["broken"]["state"] == "error"
    status = region_state(fleet, "broken")
    assert status["state"] == "error" and "spec.replicas" in status["error"]
    assert objects(fleet, "broken")
    assert results["demo"]["state"] in ("creating", "updating", "running")
    # A record gone entirely: its objects are orphans.
    fleet.store.client.delete_item(TableName=fleet.store.table_name, Key={"endpoint_name": {"S": "broken"}})
    run_cycle(fleet)
    wait_for(lambda: objects(fleet, "broken") == {}, "the orphan's Deployment to be gone")
    assert objects(fleet, "demo")


def test_stale_status_of_an_untargeted_region_is_cleared_even_without_objects(fleet: Fleet) -> None:
    deploy(fleet, regions=[REGION, "eu-west-1"])
    converge(fleet, lambda: reported_state(fleet) is not None)
    for kind, name in objects(fleet):
        fleet.cluster.delete(kind, name)  # gone by hand before the region was dropped
    wait_for(lambda: objects(fleet) == {}, "the objects deleted by hand to be gone")
    item = fleet.store.get_item("demo")
    assert item is not None and REGION in item["region_status"]
    item["target_regions"] = ["eu-west-1"]
    fleet.store.client.put_item(TableName=fleet.store.table_name, Item=_typed(item))
    assert [r["endpoint"] for r in run_cycle(fleet)] == ["demo"]
    after = fleet.store.get_item("demo")
    assert after is not None and REGION not in after["region_status"]
    assert run_cycle(fleet) == []


def test_an_endpoint_already_waiting_in_the_queue_is_not_sent_again(fleet: Fleet) -> None:
    for name in ("one", "two", "three"):
        deploy(fleet, name)
    sent: list[str] = []
    first = fan_out(fleet, lambda name, hint: sent.append(name))
    second = fan_out(fleet, lambda name, hint: sent.append(name))
    assert (first.sent, second.sent, second.already_pending) == (3, 0, 3)
    assert sorted(sent) == ["one", "three", "two"]
    reconcile(fleet, "two")  # a worker picks one up: it may be sent again
    third = fan_out(fleet, lambda name, hint: sent.append(name))
    assert (third.sent, third.already_pending) == (1, 2)


def test_a_record_in_another_namespace_is_an_error_not_a_write(fleet: Fleet) -> None:
    fleet.store.create(
        Endpoint.new("elsewhere", parse_spec({"image": "nginx:1.27"}), [REGION], namespace="team-a")
    )
    results = run_cycle(fleet)
    assert results[0]["state"] == "error" and results[0]["actions"] == []
    status = region_state(fleet, "elsewhere")
    assert status["state"] == "error" and "INFERENCE_NAMESPACE" in status["error"]
