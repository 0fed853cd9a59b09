"""The fleet's metrics: every record function writes what it says, every label stays in its closed set,
and the names follow one style (``gco_`` prefix, ``region`` on each, units in the name). Each test
records into a fresh registry (the ``fresh_metrics`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from gco_tasks.adapters import metric_labels, metrics
from gco_tasks.adapters.metric_labels import (
    ENDPOINT_STATES,
    DynamoOutcome,
    ErrorReason,
    EventOutcome,
    LockName,
)
from gco_tasks.adapters.metrics import FleetMetrics
from gco_tasks.core.results import RESULT_LABELS, ResultKind

R = "us-east-1"


def value(m: FleetMetrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, {"region": R, **labels})
    return 0.0 if found is None else found


def label_values(m: FleetMetrics, family_name: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in m.registry.collect()
        if family.name == family_name
        for sample in family.samples
        if label in sample.labels
    }


@pytest.fixture()
def region_default() -> Iterator[None]:
    previous = metrics.set_default_region(R)
    yield
    metrics.set_default_region(previous)


# --------------------------------------------------------------------------- names and labels


def test_names_follow_one_style_and_every_series_has_a_region() -> None:
    registry = CollectorRegistry()
    FleetMetrics.create(registry)
    families = list(registry.collect())
    assert len(families) == 17
    for family in families:
        assert family.name.startswith("gco_"), family.name
        assert family.documentation.endswith("."), family.name
    for collector in registry._collector_to_names:
        assert collector._labelnames[0] == "region", collector._name  # type: ignore[attr-defined]
        if collector._type == "histogram":  # type: ignore[attr-defined]
            assert collector._name.endswith("_seconds")  # type: ignore[attr-defined]


def test_metric_names_lists_every_exposed_sample_name() -> None:
    names = metrics.metric_names()
    expected = {
        "gco_reconcile_total",
        "gco_reconcile_errors_total",
        "gco_reconcile_duration_seconds_bucket",
        "gco_reconcile_duration_seconds_sum",
        "gco_reconcile_duration_seconds_count",
        "gco_fanout_duration_seconds_bucket",
        "gco_fanout_messages_total",
        "gco_endpoints",
        "gco_last_fanout_timestamp_seconds",
        "gco_kube_requests_total",
        "gco_dynamodb_requests_total",
        "gco_dynamodb_request_duration_seconds_count",
        "gco_lock_contention_total",
        "gco_lock_expired_total",
        "gco_lock_held_seconds_bucket",
        "gco_expired_messages_total",
        "gco_tasks_in_progress",
        "gco_kube_events_total",
        "gco_beat_sent_total",
    }
    assert expected <= names


# --------------------------------------------------------------------------- reconcile


def test_record_reconcile_counts_times_and_explains_errors(fresh_metrics: FleetMetrics) -> None:
    metrics.record_reconcile(R, ResultKind.APPLIED, 0.2)
    metrics.record_reconcile(R, "noop", 0.004)
    metrics.record_reconcile(R, ResultKind.NOOP, 0.006)
    metrics.record_reconcile(R, ResultKind.ERROR, 0.1, ErrorReason.KUBE_INVALID)
    metrics.record_reconcile(R, ResultKind.ERROR, 0.1)
    metrics.record_reconcile(R, ResultKind.SKIPPED_LOCKED, 0.001)
    m = fresh_metrics
    assert value(m, "gco_reconcile_total", result="applied") == 1
    assert value(m, "gco_reconcile_total", result="noop") == 2
    assert value(m, "gco_reconcile_total", result="error") == 2
    assert value(m, "gco_reconcile_total", result="skipped_locked") == 1
    assert value(m, "gco_reconcile_errors_total", reason="kube_invalid") == 1
    assert value(m, "gco_reconcile_errors_total", reason="internal") == 1, "an error without a reason"
    assert value(m, "gco_reconcile_duration_seconds_count", result="noop") == 2
    assert value(m, "gco_reconcile_duration_seconds_bucket", result="noop", le="0.005") == 1
    assert value(m, "gco_reconcile_duration_seconds_sum", result="applied") == pytest.approx(0.2)


def test_a_partial_failure_can_carry_a_reason_with_another_result(fresh_metrics: FleetMetrics) -> None:
    metrics.record_reconcile(R, ResultKind.APPLIED, 0.3, "kube_forbidden")
    assert value(fresh_metrics, "gco_reconcile_errors_total", reason="kube_forbidden") == 1
    assert value(fresh_metrics, "gco_reconcile_total", result="applied") == 1


def test_unknown_results_and_reasons_are_refused(fresh_metrics: FleetMetrics) -> None:
    with pytest.raises(ValueError):
        metrics.record_reconcile(R, "my-llm", 0.1)
    with pytest.raises(ValueError, match="not a gco_reconcile_total result label"):
        metrics.record_reconcile(R, ResultKind.INVALID, 0.1)  # a kind, mapped by ReconcileResult.label
    with pytest.raises(ValueError):
        metrics.record_reconcile(R, ResultKind.ERROR, 0.1, "my-llm: 422 from redis://:pw@host")
    assert label_values(fresh_metrics, "gco_reconcile", "result") <= {r.value for r in RESULT_LABELS}


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, ErrorReason.KUBE_UNAVAILABLE),
        (0, ErrorReason.KUBE_UNAVAILABLE),
        (429, ErrorReason.KUBE_UNAVAILABLE),
        (503, ErrorReason.KUBE_UNAVAILABLE),
        (400, ErrorReason.KUBE_INVALID),
        (422, ErrorReason.KUBE_INVALID),
        (401, ErrorReason.KUBE_FORBIDDEN),
        (403, ErrorReason.KUBE_FORBIDDEN),
        (404, ErrorReason.KUBE_NOT_FOUND),
        (409, ErrorReason.KUBE_CONFLICT),
        (415, ErrorReason.KUBE_REJECTED),
    ],
)
def test_kube_status_to_reason(status: int | None, reason: ErrorReason) -> None:
    assert metric_labels.reason_for_kube_status(status) is reason


# --------------------------------------------------------------------------- fan-out


def test_record_fanout_sets_duration_messages_states_and_time(fresh_metrics: FleetMetrics) -> None:
    metrics.record_fanout(
        R, 0.8, sent=3, already_pending=2, states={"running": 5, "error": 1}, finished_at=1e9
    )
    metrics.record_fanout(R, 0.4, sent=1, states={"running": 6, "weird": 2}, finished_at=1e9 + 15)
    m = fresh_metrics
    assert value(m, "gco_fanout_duration_seconds_count") == 2
    assert value(m, "gco_fanout_messages_total", outcome="sent") == 4
    assert value(m, "gco_fanout_messages_total", outcome="already_pending") == 2
    assert value(m, "gco_endpoints", state="running") == 6
    assert value(m, "gco_endpoints", state="error") == 0, "a state that emptied reads 0, not its old value"
    assert value(m, "gco_endpoints", state="unknown") == 2
    assert label_values(m, "gco_endpoints", "state") == set(ENDPOINT_STATES)
    assert value(m, "gco_last_fanout_timestamp_seconds") == 1e9 + 15


def test_record_fanout_without_states_leaves_them(fresh_metrics: FleetMetrics) -> None:
    metrics.set_endpoint_states(R, {"running": 2})
    metrics.record_fanout(R, 0.1, sent=0)
    assert value(fresh_metrics, "gco_endpoints", state="running") == 2
    assert value(fresh_metrics, "gco_last_fanout_timestamp_seconds") > 1.7e9


def test_state_counts_cover_every_region_state() -> None:
    counts = metric_labels.state_counts({"creating": 1, "deleting": 2, None: 1, "": 3})  # type: ignore[dict-item]
    assert set(counts) == set(ENDPOINT_STATES)
    assert counts["creating"] == 1 and counts["deleting"] == 2 and counts["unknown"] == 4


# --------------------------------------------------------------------------- Kubernetes requests


def test_observe_kube_request_keeps_labels_bounded(fresh_metrics: FleetMetrics, region_default: None) -> None:
    metrics.observe_kube_request("LIST", "deployments", "200")
    metrics.observe_kube_request("apply", "deployments", "422")
    metrics.observe_kube_request("apply", "deployments", metric_labels.kube_code(ApiException(status=503)))
    metrics.observe_kube_request("delete", "ingresses", metric_labels.kube_code(TimeoutError("timed out")))
    metrics.observe_kube_request("exec", "pods/my-llm-123", "2000", region="eu-west-1")
    m = fresh_metrics
    assert value(m, "gco_kube_requests_total", verb="list", resource="deployments", code="200") == 1
    assert value(m, "gco_kube_requests_total", verb="apply", resource="deployments", code="422") == 1
    assert value(m, "gco_kube_requests_total", verb="apply", resource="deployments", code="503") == 1
    assert value(m, "gco_kube_requests_total", verb="delete", resource="ingresses", code="<error>") == 1
    labels = {"region": "eu-west-1", "verb": "other", "resource": "other", "code": "other"}
    assert m.registry.get_sample_value("gco_kube_requests_total", labels) == 1


def test_kube_code() -> None:
    assert metric_labels.kube_code(status=201) == "201"
    assert metric_labels.kube_code(ApiException(status=404)) == "404"
    assert metric_labels.kube_code(ApiException(status=0)) == "<error>"
    assert metric_labels.kube_code(ConnectionRefusedError()) == "<error>"
    assert metric_labels.kube_code() == "<error>"


# --------------------------------------------------------------------------- DynamoDB outcomes


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (200, None, DynamoOutcome.OK),
        (400, "ProvisionedThroughputExceededException", DynamoOutcome.THROTTLED),
        (400, "ThrottlingException", DynamoOutcome.THROTTLED),
        (400, "ConditionalCheckFailedException", DynamoOutcome.CONDITIONAL_FAILED),
        (400, "ValidationException", DynamoOutcome.CLIENT_ERROR),
        (500, "InternalServerError", DynamoOutcome.SERVER_ERROR),
    ],
)
def test_dynamo_outcome(status: int, code: str | None, outcome: DynamoOutcome) -> None:
    assert metric_labels.dynamo_outcome(status, code) is outcome


def test_observe_dynamodb_request(fresh_metrics: FleetMetrics) -> None:
    metrics.observe_dynamodb_request(R, "Scan", DynamoOutcome.OK, 0.02)
    metrics.observe_dynamodb_request(R, "not an operation!", DynamoOutcome.CLIENT_ERROR, 0.02)
    assert value(fresh_metrics, "gco_dynamodb_requests_total", operation="Scan", outcome="ok") == 1
    assert value(fresh_metrics, "gco_dynamodb_requests_total", operation="other", outcome="client_error") == 1
    assert value(fresh_metrics, "gco_dynamodb_request_duration_seconds_count", operation="Scan") == 1


# --------------------------------------------------------------------------- locks, tasks, events, beat


def test_lock_records(fresh_metrics: FleetMetrics) -> None:
    metrics.record_lock_contention(R, LockName.ENDPOINT)
    metrics.record_lock_contention(R, "fan_out")
    metrics.record_lock_released(R, LockName.ENDPOINT, 0.3, expired=False)
    metrics.record_lock_released(R, LockName.ENDPOINT, 200.0, expired=True)
    m = fresh_metrics
    assert value(m, "gco_lock_contention_total", lock="endpoint") == 1
    assert value(m, "gco_lock_contention_total", lock="fan_out") == 1
    assert value(m, "gco_lock_held_seconds_count", lock="endpoint") == 2
    assert value(m, "gco_lock_expired_total", lock="endpoint") == 1
    with pytest.raises(ValueError):
        metrics.record_lock_contention(R, "gco:us-east-1:endpoint:my-llm")


def test_task_records(fresh_metrics: FleetMetrics) -> None:
    metrics.task_started(R, "gco_tasks.reconcile_endpoint")
    metrics.task_started(R, "gco_tasks.reconcile_endpoint")
    metrics.task_finished(R, "gco_tasks.reconcile_endpoint")
    metrics.record_expired_message(R, "gco_tasks.fan_out")
    metrics.record_expired_message(R, "someone.elses.task")
    metrics.record_beat_sent(R, "gco_tasks.fan_out")
    metrics.record_event(R, EventOutcome.PATCHED)
    m = fresh_metrics
    assert value(m, "gco_tasks_in_progress", task="gco_tasks.reconcile_endpoint") == 1
    assert value(m, "gco_expired_messages_total", task="gco_tasks.fan_out") == 1
    assert value(m, "gco_expired_messages_total", task="other") == 1
    assert value(m, "gco_beat_sent_total", task="gco_tasks.fan_out") == 1
    assert value(m, "gco_kube_events_total", outcome="patched") == 1


def test_use_restores_the_previous_set() -> None:
    fresh = FleetMetrics.create(CollectorRegistry())
    previous = metrics.use(fresh)
    try:
        assert metrics.current() is fresh
    finally:
        assert metrics.use(previous) is fresh
    assert metrics.current() is previous


# --------------------------------------------------------------------------- deciding the labels


def _client_error(code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}}, "UpdateItem")


def _wrapped(cause: BaseException) -> BaseException:
    from gco_tasks.adapters.store import TransientStoreError

    try:
        raise TransientStoreError("UpdateItem failed") from cause
    except TransientStoreError as exc:
        return exc


def test_reason_for_exception() -> None:
    from billiard.exceptions import SoftTimeLimitExceeded
    from botocore.exceptions import EndpointConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gco_tasks.adapters.cluster import PermanentClusterError, TransientClusterError
    from gco_tasks.core.records import InvalidEndpointError

    reason = metric_labels.reason_for_exception
    assert reason(InvalidEndpointError([("spec.port", "must be 1-65535")], "x")) is ErrorReason.INVALID_SPEC
    assert reason(SoftTimeLimitExceeded()) is ErrorReason.TIME_LIMIT
    assert reason(RedisConnectionError("down")) is ErrorReason.REDIS_ERROR
    assert reason(PermanentClusterError("apply Deployment/x: 422", 422)) is ErrorReason.KUBE_INVALID
    assert reason(PermanentClusterError("apply Deployment/x: 403", 403)) is ErrorReason.KUBE_FORBIDDEN
    assert reason(TransientClusterError("list deployments: timed out")) is ErrorReason.KUBE_UNAVAILABLE
    assert reason(ApiException(status=409)) is ErrorReason.KUBE_CONFLICT
    throttled = _wrapped(_client_error("ProvisionedThroughputExceededException"))
    assert reason(throttled) is ErrorReason.DYNAMODB_THROTTLED
    assert reason(_client_error("ValidationException")) is ErrorReason.DYNAMODB_ERROR
    unreachable = _wrapped(EndpointConnectionError(endpoint_url="http://x"))
    assert reason(unreachable) is ErrorReason.DYNAMODB_ERROR
    assert reason(KeyError("spec")) is ErrorReason.INTERNAL
