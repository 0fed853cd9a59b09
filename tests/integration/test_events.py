"""Kubernetes Events through a real API client: created as ``events.k8s.io/v1`` objects on the endpoint's
Deployment, repeats aggregated into the existing Event's series (also across workers and after the
cache window), a long note cut to 1 kB, and failures reported as an outcome, never raised.

The tests talk to the API server of the ``events_client`` fixture through the official client only, and
read back what they wrote through the API (no stand-in internals), so they run unchanged against a real
control plane: today the fixture is the sandbox API server (a local stand-in), which validates every
Event against Kubernetes 1.30's strict schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes import client

from gco_tasks.adapters.events import (
    NOTE_LIMIT_BYTES,
    EventReason,
    EventRecorder,
    Regarding,
    event_key,
    event_name,
)
from gco_tasks.adapters.metric_labels import EventOutcome
from gco_tasks.adapters.metrics import FleetMetrics

NAMESPACE = "gco-inference"
REGION = "us-east-1"


@pytest.fixture()
def events_client(kube_client: client.ApiClient) -> client.ApiClient:
    """The API server these tests write Events to: the sandbox stand-in here; any ApiClient with
    create/patch/list/delete on events.k8s.io Events in ``gco-inference`` fits."""
    return kube_client


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def recorder(events_client: client.ApiClient, clock: Clock, fresh_metrics: FleetMetrics) -> EventRecorder:
    return EventRecorder(events_client, REGION, reporting_instance="gco-tasks-worker-abc12", clock=clock)


@pytest.fixture()
def deployment(events_client: client.ApiClient) -> Iterator[Regarding]:
    body = {
        "metadata": {"name": "my-llm", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "my-llm"}},
            "template": {
                "metadata": {"labels": {"app": "my-llm"}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }
    created = client.AppsV1Api(events_client).create_namespaced_deployment(NAMESPACE, body)
    yield Regarding("my-llm", NAMESPACE, uid=created.metadata.uid)
    client.AppsV1Api(events_client).delete_namespaced_deployment("my-llm", NAMESPACE)


def events(api_client: client.ApiClient) -> list[dict[str, Any]]:
    response = client.EventsV1Api(api_client).list_namespaced_event(NAMESPACE, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return [item for item in items if item.get("reportingController") == "gco-tasks"]


def outcomes(metrics: FleetMetrics) -> dict[str, float]:
    found = {}
    for outcome in EventOutcome:
        value = metrics.registry.get_sample_value(
            "gco_kube_events_total", {"region": REGION, "outcome": outcome.value}
        )
        found[outcome.value] = value or 0.0
    return found


def kube_requests(metrics: FleetMetrics) -> dict[tuple[str, str], float]:
    """(verb, HTTP code) -> requests counted by ``gco_kube_requests_total``."""
    return {
        (s.labels["verb"], s.labels["code"]): s.value
        for family in metrics.registry.collect()
        if family.name == "gco_kube_requests"
        for s in family.samples
        if s.name == "gco_kube_requests_total"
    }


def test_first_occurrence_creates_an_event_on_the_deployment(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient, clock: Clock
) -> None:
    note = "applied Deployment/my-llm, Service/my-llm (image nginx:1.27 -> nginx:1.28)"
    assert recorder.record(deployment, EventReason.APPLIED, note) is EventOutcome.CREATED
    (event,) = events(events_client)
    assert event["metadata"]["name"] == event_name(
        deployment, event_key(deployment, EventReason.APPLIED, note)
    )
    assert event["metadata"]["namespace"] == NAMESPACE
    assert event["reportingController"] == "gco-tasks"
    assert event["reportingInstance"] == "gco-tasks-worker-abc12"
    assert event["regarding"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "my-llm",
        "namespace": NAMESPACE,
        "uid": deployment.uid,
    }
    assert (event["reason"], event["type"], event["action"]) == ("Applied", "Normal", "Apply")
    assert event["note"] == note
    assert event["eventTime"].startswith("2027-01-15T08:00:00.")
    assert "series" not in event


def test_repeats_patch_the_series_of_one_event(
    recorder: EventRecorder,
    deployment: Regarding,
    events_client: client.ApiClient,
    clock: Clock,
    fresh_metrics: FleetMetrics,
) -> None:
    note = "apply Deployment/my-llm: 422 Invalid: spec.replicas: must be greater than or equal to 0"
    for _ in range(5):
        recorder.record(deployment, EventReason.APPLY_FAILED, note)
        clock.now += 15
    (event,) = events(events_client)
    assert event["type"] == "Warning"
    assert event["series"]["count"] == 5
    assert event["series"]["lastObservedTime"].startswith("2027-01-15T08:01:00.")
    assert outcomes(fresh_metrics) == {"created": 1, "patched": 4, "failed": 0}
    requests = kube_requests(fresh_metrics)
    assert requests == {("create", "201"): 1, ("patch", "200"): 4}


def test_a_different_note_or_reason_is_another_event(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient
) -> None:
    recorder.record(deployment, EventReason.APPLY_FAILED, "apply Deployment/my-llm: 422 one")
    recorder.record(deployment, EventReason.APPLY_FAILED, "apply Deployment/my-llm: 422 two")
    recorder.record(deployment, EventReason.ROLLOUT_STUCK, "apply Deployment/my-llm: 422 one")
    assert len(events(events_client)) == 3


def test_another_worker_joins_the_existing_event(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient, clock: Clock
) -> None:
    note = "0 ready replicas for over 300s; Ingress removed to protect the shared ALB"
    recorder.record(deployment, EventReason.INGRESS_WITHHELD, note)
    recorder.record(deployment, EventReason.INGRESS_WITHHELD, note)
    other = EventRecorder(events_client, REGION, reporting_instance="gco-tasks-worker-xyz89", clock=clock)
    assert other.record(deployment, EventReason.INGRESS_WITHHELD, note) is EventOutcome.PATCHED
    assert other.record(deployment, EventReason.INGRESS_WITHHELD, note) is EventOutcome.PATCHED
    (event,) = events(events_client)
    assert event["series"]["count"] == 4
    assert event["reportingInstance"] == "gco-tasks-worker-abc12", "the creator's"


def test_after_the_window_the_count_is_read_back_not_restarted(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient, clock: Clock
) -> None:
    note = "Deployment my-llm has not progressed for 600s"
    for _ in range(3):
        recorder.record(deployment, EventReason.ROLLOUT_STUCK, note)
    clock.now += recorder.window + 1
    assert recorder.record(deployment, EventReason.ROLLOUT_STUCK, note) is EventOutcome.PATCHED
    (event,) = events(events_client)
    assert event["series"]["count"] == 4


def test_an_event_gone_from_the_api_is_created_again(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient
) -> None:
    note = "deleted Deployment/my-llm, Service/my-llm"
    recorder.record(deployment, EventReason.DELETED, note)
    (event,) = events(events_client)
    client.EventsV1Api(events_client).delete_namespaced_event(event["metadata"]["name"], NAMESPACE)
    assert recorder.record(deployment, EventReason.DELETED, note) is EventOutcome.CREATED
    (again,) = events(events_client)
    assert "series" not in again


def test_the_cache_is_bounded(deployment: Regarding, events_client: client.ApiClient, clock: Clock) -> None:
    small = EventRecorder(events_client, REGION, reporting_instance="w", cache_size=2, clock=clock)
    for note in ("one", "two", "three", "one"):
        small.record(deployment, EventReason.APPLY_FAILED, note)
    assert len(small._seen) == 2
    counts = {e["note"]: (e.get("series") or {}).get("count", 1) for e in events(events_client)}
    assert counts == {"one": 2, "two": 1, "three": 1}, "evicted 'one' joined its Event through the API"


def test_a_long_note_is_cut_to_the_api_limit(
    recorder: EventRecorder, deployment: Regarding, events_client: client.ApiClient
) -> None:
    note = "Ünïcödé error: " + "é" * 2000
    assert recorder.record(deployment, EventReason.INVALID_SPEC, note) is EventOutcome.CREATED
    (event,) = events(events_client)
    assert len(event["note"].encode()) <= NOTE_LIMIT_BYTES
    assert event["note"].startswith("Ünïcödé error: é") and event["note"].endswith("...")


def test_failures_are_an_outcome_never_an_exception(
    recorder: EventRecorder, fresh_metrics: FleetMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    missing_namespace = Regarding("my-llm", "no-such-namespace")
    with caplog.at_level(logging.DEBUG, logger="gco_tasks.adapters.events"):
        assert recorder.record(missing_namespace, EventReason.APPLIED, "x") is EventOutcome.FAILED
    assert "could not record event Applied" in caplog.text
    assert outcomes(fresh_metrics)["failed"] == 1
    assert fresh_metrics.registry.get_sample_value(
        "gco_kube_requests_total", {"region": REGION, "verb": "create", "resource": "events", "code": "404"}
    )


def test_an_unreachable_api_server_is_a_failed_outcome(fresh_metrics: FleetMetrics) -> None:
    from gco_sandbox.services import free_port

    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as unreachable:
        recorder = EventRecorder(unreachable, REGION, reporting_instance="w", timeout_seconds=2)
        outcome = recorder.record(Regarding("my-llm", NAMESPACE), EventReason.APPLIED, "x")
    assert outcome is EventOutcome.FAILED
    assert fresh_metrics.registry.get_sample_value(
        "gco_kube_requests_total",
        {"region": REGION, "verb": "create", "resource": "events", "code": "<error>"},
    )


class CountingPacer:
    """The region's write budget as the recorder sees it (the ``WritePacer`` port): counts the slots taken."""

    def __init__(self) -> None:
        self.slots = 0

    def acquire(self) -> None:
        self.slots += 1

    def hold_off(self, seconds: float) -> None:
        raise AssertionError("the recorder never sees a 429 here")


def test_every_event_request_takes_a_slot_of_the_write_budget(
    events_client: client.ApiClient, deployment: Regarding, clock: Clock, fresh_metrics: FleetMetrics
) -> None:
    pacer = CountingPacer()
    paced = EventRecorder(events_client, REGION, reporting_instance="w", clock=clock, pacer=pacer)
    assert paced.record(deployment, EventReason.APPLIED, "applied Deployment/my-llm") is EventOutcome.CREATED
    assert pacer.slots == 1
    clock.now += 5
    assert paced.record(deployment, EventReason.APPLIED, "applied Deployment/my-llm") is EventOutcome.PATCHED
    assert pacer.slots == 2
    requests = sum(
        fresh_metrics.registry.get_sample_value(
            "gco_kube_requests_total", {"verb": verb, "resource": "events", "code": code, "region": REGION}
        )
        or 0.0
        for verb, code in (("create", "201"), ("patch", "200"))
    )
    assert requests == pacer.slots, "one slot per request to the API server"


def test_workers_sharing_a_count_in_redis_send_one_request_per_occurrence(
    deployment: Regarding,
    events_client: client.ApiClient,
    clock: Clock,
    fresh_metrics: FleetMetrics,
    redis_url: str,
) -> None:
    """Issue 26: a change reported by several workers (and a restarted one) costs one request per
    occurrence: the first creates the Event, each repeat patches its series with the count kept in the
    region's Redis. Fails without ``SharedOccurrences``: each worker new to the occurrence sent a CREATE
    answered 409, then a no-op PATCH to read the count, then the PATCH (three requests for one)."""
    import redis

    from gco_tasks.adapters.events import SharedOccurrences

    shared = SharedOccurrences(redis.Redis.from_url(redis_url), "gco:us-east-1:")
    workers = [
        EventRecorder(events_client, REGION, reporting_instance=f"w{i}", clock=clock, occurrences=shared)
        for i in range(3)
    ]
    note = "applied Deployment/my-llm (image nginx:1.27 -> nginx:1.28)"
    for recorder in [*workers, workers[0]]:
        recorder.record(deployment, EventReason.APPLIED, note)
        clock.now += 5
    (event,) = events(events_client)
    assert event["series"]["count"] == 4
    requests = kube_requests(fresh_metrics)
    assert requests == {("create", "201"): 1, ("patch", "200"): 3}
