"""The telemetry of the tasks through the fleet's real adapters (moto, a private redis-server, each API
server): the metric values one reconcile, a locked skip, an invalid record, a fan-out, a watchdog pass
and a lock lost before its release record, and the Events they leave on the endpoint's Deployment,
carrying its uid. Celery is not involved here (``tests/e2e/test_wired_fleet.py`` runs the same through
real processes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import redis
from kubernetes import client

from gco_tasks.adapters import metrics
from gco_tasks.adapters.locks import RegionState
from gco_tasks.adapters.metrics import FleetMetrics
from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.errors import TransientError
from gco_tasks.core.hint import Hint
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.results import ResultKind
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.flows.watchdog import watchdog
from gco_tasks.worker import telemetry
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, make_fleet, wire

NAMESPACE = "gco-inference"


@pytest.fixture()
def recorded(fresh_metrics: FleetMetrics) -> Iterator[FleetMetrics]:
    """A fresh registry, with this test's region as the one the gateway's requests are counted in."""
    previous = metrics.set_default_region(REGION)
    yield fresh_metrics
    metrics.set_default_region(previous)


def value(recorded: FleetMetrics, name: str, **labels: str) -> float:
    return recorded.registry.get_sample_value(name, {"region": REGION, **labels}) or 0.0


def our_events(api_client: client.ApiClient, name: str) -> list[dict[str, Any]]:
    response = client.EventsV1Api(api_client).list_namespaced_event(NAMESPACE, _preload_content=False)
    items = json.loads(response.data)["items"]
    return [
        e for e in items if e.get("reportingController") == "gco-tasks" and e["regarding"]["name"] == name
    ]


def deployment_uid(fleet: Fleet, name: str) -> str:
    (deployment,) = fleet.cluster.list_objects(endpoint_selector(name), ["Deployment"])
    return str(deployment["metadata"]["uid"])


def create(fleet: Fleet, name: str, **spec: Any) -> None:
    fleet.store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27", **spec}), [REGION]))


def test_a_reconcile_its_locked_skip_and_an_invalid_record(
    fleet: Fleet, cluster: Cluster, recorded: FleetMetrics
) -> None:
    create(fleet, "tele-a")
    applied = telemetry.run_reconcile(fleet, reconcile, "tele-a")
    assert applied.kind is ResultKind.APPLIED
    assert value(recorded, "gco_reconcile_total", result="applied") == 1
    assert value(recorded, "gco_reconcile_duration_seconds_count", result="applied") == 1
    for resource, candidates in (("deployments", 2), ("services", 2), ("ingresses", 1)):
        created = value(recorded, "gco_kube_requests_total", verb="create", resource=resource, code="201")
        assert created == 1, "a create-only server-side apply answers 201 Created for a new object"
        # An ad hoc reconcile reads the objects an endpoint can have by name (primary, canary), no LIST.
        assert (
            value(recorded, "gco_kube_requests_total", verb="get", resource=resource, code="404")
            == candidates
        )
        assert value(recorded, "gco_kube_requests_total", verb="list", resource=resource, code="200") == 0
    assert value(recorded, "gco_dynamodb_requests_total", operation="GetItem", outcome="ok") >= 1
    assert value(recorded, "gco_lock_held_seconds_count", lock="endpoint") == 1
    uid = deployment_uid(fleet, "tele-a")
    (event,) = our_events(cluster.api_client, "tele-a")
    assert (event["reason"], event["type"], event["regarding"]["uid"]) == ("Applied", "Normal", uid)
    assert event["note"] == "created Deployment/tele-a, Service/tele-a, Ingress/inference-tele-a"
    assert value(recorded, "gco_kube_events_total", outcome="created") == 1
    assert value(recorded, "gco_kube_requests_total", verb="create", resource="events", code="201") == 1

    with fleet.state.endpoint_lock("tele-a", ttl_seconds=30) as held:
        assert held
        skipped = telemetry.run_reconcile(fleet, reconcile, "tele-a")
    assert skipped.kind is ResultKind.SKIPPED_LOCKED
    assert value(recorded, "gco_reconcile_total", result="skipped_locked") == 1
    assert value(recorded, "gco_lock_contention_total", lock="endpoint") == 1

    fleet.store.client.update_item(
        TableName=fleet.store.table_name,
        Key={"endpoint_name": {"S": "tele-a"}},
        UpdateExpression="SET spec.port = :p",
        ExpressionAttributeValues={":p": {"N": "70000"}},
    )
    invalid = telemetry.run_reconcile(fleet, reconcile, "tele-a")
    assert invalid.kind is ResultKind.INVALID
    assert value(recorded, "gco_reconcile_total", result="error") == 1
    assert value(recorded, "gco_reconcile_errors_total", reason="invalid_spec") == 1
    reasons = {e["reason"]: e for e in our_events(cluster.api_client, "tele-a")}
    assert set(reasons) == {"Applied", "InvalidSpec"}
    assert reasons["InvalidSpec"]["type"] == "Warning" and reasons["InvalidSpec"]["regarding"]["uid"] == uid
    assert "spec.port" in reasons["InvalidSpec"]["note"]
    assert "nothing was changed in the cluster" in reasons["InvalidSpec"]["note"]
    telemetry.run_reconcile(fleet, reconcile, "tele-a")
    repeated = {e["reason"]: e for e in our_events(cluster.api_client, "tele-a")}["InvalidSpec"]
    assert repeated["series"]["count"] == 2, "a repeating error is one Event with a series"


def test_a_fan_out_and_the_reconciles_it_sends(
    fleet: Fleet, cluster: Cluster, recorded: FleetMetrics
) -> None:
    create(fleet, "tele-b")
    create(fleet, "tele-c")
    sent: list[tuple[str, Hint | None]] = []

    def send(name: str, hint: Hint | None) -> None:
        sent.append((name, wire(hint)))

    summary = telemetry.run_fan_out(fleet, fan_out, send)
    assert summary.sent == 2
    assert value(recorded, "gco_fanout_messages_total", outcome="sent") == 2
    assert value(recorded, "gco_fanout_duration_seconds_count") == 1
    assert value(recorded, "gco_endpoints", state="unknown") == 2, "no region has reported yet"
    assert value(recorded, "gco_last_fanout_timestamp_seconds") > 0
    for name, hint in sent:
        telemetry.run_reconcile(fleet, reconcile, name, hint)
    assert value(recorded, "gco_reconcile_total", result="applied") == 2
    assert value(recorded, "gco_kube_requests_total", verb="list", resource="deployments", code="200") == 1

    def cycle() -> None:
        sent.clear()
        telemetry.run_fan_out(fleet, fan_out, send)
        for name, hint in sent:
            again = telemetry.run_reconcile(fleet, reconcile, name, hint)
            assert again.kind is not ResultKind.APPLIED

    cycle()  # its Scan finds no report yet (a new endpoint's first is its first look's); it sends them
    assert value(recorded, "gco_endpoints", state="unknown") == 2
    cycle()
    assert value(recorded, "gco_endpoints", state="unknown") == 0
    reported = [value(recorded, "gco_endpoints", state=state) for state in ("creating", "running")]
    assert sum(reported) == 2, reported
    deadline = time.monotonic() + 60
    while (fleet.store.get_item("tele-b") or {}).get("desired_state") != "running":
        assert time.monotonic() < deadline, "not promoted within 60 s"
        time.sleep(0.2)
        cycle()
    uid = deployment_uid(fleet, "tele-b")
    events = our_events(cluster.api_client, "tele-b")
    assert {e["reason"]: e["regarding"].get("uid") for e in events} == {"Applied": uid, "Promoted": uid}, (
        "the hint's digests carry the uid; a later reconcile saw the rollout done and promoted"
    )

    fan_outs = value(recorded, "gco_fanout_duration_seconds_count")
    with fleet.state.fan_out_lock(ttl_seconds=30):
        assert telemetry.run_fan_out(fleet, fan_out, send).as_dict() == {
            "skipped": "another fan-out of this region is running"
        }
    assert value(recorded, "gco_lock_contention_total", lock="fan_out") == 1
    assert value(recorded, "gco_fanout_duration_seconds_count") == fan_outs, "a skipped fan-out is not one"


@pytest.mark.standin_only  # fault injection
def test_a_transient_failure_is_an_error_attempt_with_its_reason(
    fleet: Fleet, cluster: Cluster, recorded: FleetMetrics
) -> None:
    create(fleet, "tele-d")
    assert cluster.standin is not None
    cluster.standin.add_fault(verb="apply", resource="deployments", status=503, count=1)
    with pytest.raises(TransientError):
        telemetry.run_reconcile(fleet, reconcile, "tele-d")
    assert value(recorded, "gco_reconcile_total", result="error") == 1
    assert value(recorded, "gco_reconcile_errors_total", reason="kube_unavailable") == 1
    assert value(recorded, "gco_kube_requests_total", verb="create", resource="deployments", code="503") == 1
    assert our_events(cluster.api_client, "tele-d") == [], "a retried attempt records no Event"


def test_the_watchdog_records_the_ingress_it_withholds(
    redis_url: str, dynamodb_url: str, cluster: Cluster, recorded: FleetMetrics
) -> None:
    fleet = make_fleet(redis_url, cluster.api_client, inference_unhealthy_threshold_seconds=60)
    fleet.store.create_table()
    try:
        create(fleet, "tele-e", image="example.com/crashloop:1")
        telemetry.run_reconcile(fleet, reconcile, "tele-e")
        sent: list[str] = []

        def send(name: str, _: Hint | None) -> None:
            sent.append(name)

        first = telemetry.run_watchdog(fleet, partial(watchdog, now=1_000.0), send)
        assert first.withheld == [] and first.unready == ["tele-e"]
        second = telemetry.run_watchdog(fleet, partial(watchdog, now=1_061.0), send)
        assert second.withheld == ["tele-e"]
        withheld = [e for e in our_events(cluster.api_client, "tele-e") if e["reason"] == "IngressWithheld"]
        (event,) = withheld
        assert event["type"] == "Warning" and event["regarding"]["uid"] == deployment_uid(fleet, "tele-e")
        assert "Ingress/inference-tele-e removed" in event["note"] and "over 60s" in event["note"]
    finally:
        fleet.state.client.close()


def test_a_lock_lost_before_its_release_is_counted_expired(redis_url: str, recorded: FleetMetrics) -> None:
    """The lock's key is gone when its holder releases it (as when it outlived its TTL): counted in
    ``gco_lock_expired_total``, and the release does not fail the task."""
    broker = redis.Redis.from_url(redis_url)
    state = RegionState(broker, REGION)
    try:
        with state.endpoint_lock("tele-f", ttl_seconds=60) as held:
            assert held
            assert broker.delete(state.keys.endpoint_lock("tele-f")) == 1
        with state.fan_out_lock(ttl_seconds=60) as held:
            assert held
    finally:
        broker.close()
    assert value(recorded, "gco_lock_expired_total", lock="endpoint") == 1
    assert value(recorded, "gco_lock_expired_total", lock="fan_out") == 0
    assert value(recorded, "gco_lock_held_seconds_count", lock="fan_out") == 1
