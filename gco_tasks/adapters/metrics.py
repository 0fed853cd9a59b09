"""Prometheus metrics of the fleet: their names, the registry, and the small typed functions that record
them (callers never touch a metric object); the label values are ``metric_labels``'.

Where it stands in the flow: beside every step; ``worker.exporter`` serves what is recorded here (one
file per process under ``PROMETHEUS_MULTIPROC_DIR``, aggregated at scrape time: docs/architecture.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from gco_tasks.adapters.metric_labels import (
    OTHER,
    DynamoOutcome,
    ErrorReason,
    EventOutcome,
    FanoutOutcome,
    LockName,
    kube_labels,
    state_counts,
    task_label,
)
from gco_tasks.core.results import RESULT_LABELS, ResultKind

log = logging.getLogger(__name__)


RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FANOUT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


# --------------------------------------------------------------------------- the metric objects


@dataclass(frozen=True)
class FleetMetrics:
    """Every metric object, registered on one registry (the default one in a fleet process; a fresh
    ``CollectorRegistry`` in a test)."""

    registry: CollectorRegistry
    reconcile_total: Counter
    reconcile_errors_total: Counter
    reconcile_duration_seconds: Histogram
    fanout_duration_seconds: Histogram
    fanout_messages_total: Counter
    endpoints: Gauge
    last_fanout_timestamp_seconds: Gauge
    kube_requests_total: Counter
    dynamodb_requests_total: Counter
    dynamodb_request_duration_seconds: Histogram
    lock_contention_total: Counter
    lock_expired_total: Counter
    lock_held_seconds: Histogram
    expired_messages_total: Counter
    tasks_in_progress: Gauge
    kube_events_total: Counter
    beat_sent_total: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FleetMetrics:
        r = registry
        return cls(
            registry=r,
            reconcile_total=Counter(
                "gco_reconcile_total",
                "Reconciles of one endpoint, by result.",
                ["region", "result"],
                registry=r,
            ),
            reconcile_errors_total=Counter(
                "gco_reconcile_errors_total",
                "Reconcile errors, by bounded reason.",
                ["region", "reason"],
                registry=r,
            ),
            reconcile_duration_seconds=Histogram(
                "gco_reconcile_duration_seconds",
                "Time of one reconcile_endpoint, by result.",
                ["region", "result"],
                buckets=RECONCILE_BUCKETS,
                registry=r,
            ),
            fanout_duration_seconds=Histogram(
                "gco_fanout_duration_seconds",
                "Time of one fan-out (Scan, LISTs, sends).",
                ["region"],
                buckets=FANOUT_BUCKETS,
                registry=r,
            ),
            fanout_messages_total=Counter(
                "gco_fanout_messages_total",
                "Reconcile messages of fan-outs: sent, or not sent because one still waits.",
                ["region", "outcome"],
                registry=r,
            ),
            endpoints=Gauge(
                "gco_endpoints",
                "Endpoints of the region by state, as of the last fan-out.",
                ["region", "state"],
                multiprocess_mode="mostrecent",
                registry=r,
            ),
            last_fanout_timestamp_seconds=Gauge(
                "gco_last_fanout_timestamp_seconds",
                "Unix time the last fan-out of the region finished.",
                ["region"],
                multiprocess_mode="max",
                registry=r,
            ),
            kube_requests_total=Counter(
                "gco_kube_requests_total",
                "Kubernetes API requests, by verb, resource and HTTP code (<error>: no answer).",
                ["region", "verb", "resource", "code"],
                registry=r,
            ),
            dynamodb_requests_total=Counter(
                "gco_dynamodb_requests_total",
                "DynamoDB API calls (after botocore's retries), by operation and outcome.",
                ["region", "operation", "outcome"],
                registry=r,
            ),
            dynamodb_request_duration_seconds=Histogram(
                "gco_dynamodb_request_duration_seconds",
                "Time of one DynamoDB API call, retries included.",
                ["region", "operation"],
                buckets=REQUEST_BUCKETS,
                registry=r,
            ),
            lock_contention_total=Counter(
                "gco_lock_contention_total",
                "Lock acquisitions that found the lock held by another worker.",
                ["region", "lock"],
                registry=r,
            ),
            lock_expired_total=Counter(
                "gco_lock_expired_total",
                "Locks that expired (held past their TTL) before their holder released them.",
                ["region", "lock"],
                registry=r,
            ),
            lock_held_seconds=Histogram(
                "gco_lock_held_seconds",
                "How long a lock was held, from acquisition to release.",
                ["region", "lock"],
                buckets=LOCK_BUCKETS,
                registry=r,
            ),
            expired_messages_total=Counter(
                "gco_expired_messages_total",
                "Task messages dropped unrun because they expired in the queue.",
                ["region", "task"],
                registry=r,
            ),
            tasks_in_progress=Gauge(
                "gco_tasks_in_progress",
                "Tasks running now in live worker processes.",
                ["region", "task"],
                multiprocess_mode="livesum",
                registry=r,
            ),
            kube_events_total=Counter(
                "gco_kube_events_total",
                "Kubernetes Events recorded: created, patched (a repeat), or failed.",
                ["region", "outcome"],
                registry=r,
            ),
            beat_sent_total=Counter(
                "gco_beat_sent_total", "Messages sent by beat, by task.", ["region", "task"], registry=r
            ),
        )


_lock = threading.Lock()
_metrics = FleetMetrics.create(REGISTRY)
_default_region = "unknown"


def current() -> FleetMetrics:
    """The metric objects record functions write to."""
    return _metrics


def use(metrics: FleetMetrics) -> FleetMetrics:
    """Make record functions write to ``metrics``; returns the previous set (tests restore it)."""
    global _metrics
    with _lock:
        previous, _metrics = _metrics, metrics
    return previous


def default_region() -> str:
    """The region of hooks that are not told one (see ``set_default_region``)."""
    return _default_region


def set_default_region(region: str) -> str:
    """The region of hooks that are not told one (``observe_kube_request``); one per process, set by
    ``exporter.install``. Returns the previous one."""
    global _default_region
    previous, _default_region = _default_region, region
    return previous


def metric_names(registry: CollectorRegistry | None = None) -> set[str]:
    """Every sample name the fleet can expose (``gco_reconcile_total``, ``..._bucket`` ...), from a
    fresh registry unless one is given."""
    registry = registry or FleetMetrics.create(CollectorRegistry()).registry
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        base = family.name
        names |= {base + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


# --------------------------------------------------------------------------- record functions


def record_reconcile(
    region: str,
    result_kind: ResultKind | str,
    duration_s: float,
    error_reason: ErrorReason | str | None = None,
) -> None:
    """One finished ``reconcile_endpoint``: its label (``ReconcileResult.label``, one of
    ``RESULT_LABELS``), its duration and, when it failed (wholly or for one object), the reason. An
    ``error`` result without a reason counts as ``internal``."""
    result = ResultKind(result_kind)
    if result not in RESULT_LABELS:
        raise ValueError(f"not a gco_reconcile_total result label: {result.value}")
    if error_reason is None and result is ResultKind.ERROR:
        error_reason = ErrorReason.INTERNAL
    m = _metrics
    m.reconcile_total.labels(region, result.value).inc()
    m.reconcile_duration_seconds.labels(region, result.value).observe(max(0.0, duration_s))
    if error_reason is not None:
        m.reconcile_errors_total.labels(region, ErrorReason(error_reason).value).inc()


def record_fanout(
    region: str,
    duration_s: float,
    sent: int,
    already_pending: int = 0,
    states: Mapping[str, int] | None = None,
    finished_at: float | None = None,
) -> None:
    """One finished fan-out: its duration, the messages it sent (or skipped as still pending), the
    region's endpoints by state when known, and the time it finished."""
    m = _metrics
    m.fanout_duration_seconds.labels(region).observe(max(0.0, duration_s))
    m.fanout_messages_total.labels(region, FanoutOutcome.SENT.value).inc(max(0, sent))
    m.fanout_messages_total.labels(region, FanoutOutcome.ALREADY_PENDING.value).inc(max(0, already_pending))
    if states is not None:
        set_endpoint_states(region, states)
    m.last_fanout_timestamp_seconds.labels(region).set(time.time() if finished_at is None else finished_at)


def set_endpoint_states(region: str, counts: Mapping[str, int]) -> None:
    """``gco_endpoints{state}`` for every state (see ``state_counts``)."""
    for state, count in state_counts(counts).items():
        _metrics.endpoints.labels(region, state).set(count)


def observe_kube_request(verb: str, resource: str, code: str, region: str | None = None) -> None:
    """One Kubernetes API request (call it from the gateway's single ``_call``, success or not):
    ``verb`` as the gateway names it (list, apply, delete ...), ``resource`` the plural, ``code`` from
    ``kube_code``."""
    labels = kube_labels(verb, resource, code)
    _metrics.kube_requests_total.labels(region or _default_region, *labels).inc()


def observe_dynamodb_request(region: str, operation: str, outcome: DynamoOutcome, duration_s: float) -> None:
    m = _metrics
    op = operation if operation.isalnum() and len(operation) <= 40 else OTHER
    m.dynamodb_requests_total.labels(region, op, outcome.value).inc()
    m.dynamodb_request_duration_seconds.labels(region, op).observe(max(0.0, duration_s))


def record_lock_contention(region: str, lock: LockName | str) -> None:
    """A non-blocking acquisition found ``lock`` held (a skipped reconcile or fan-out)."""
    _metrics.lock_contention_total.labels(region, LockName(lock).value).inc()


def record_lock_released(region: str, lock: LockName | str, held_s: float, expired: bool) -> None:
    """A lock's holder let go after ``held_s``; ``expired`` when the lock had already expired (held past
    its TTL: another worker may have taken it meanwhile)."""
    name = LockName(lock).value
    _metrics.lock_held_seconds.labels(region, name).observe(max(0.0, held_s))
    if expired:
        _metrics.lock_expired_total.labels(region, name).inc()


def record_expired_message(region: str, task: str | None) -> None:
    _metrics.expired_messages_total.labels(region, task_label(task)).inc()


def task_started(region: str, task: str | None) -> None:
    _metrics.tasks_in_progress.labels(region, task_label(task)).inc()


def task_finished(region: str, task: str | None) -> None:
    _metrics.tasks_in_progress.labels(region, task_label(task)).dec()


def record_event(region: str, outcome: EventOutcome) -> None:
    _metrics.kube_events_total.labels(region, outcome.value).inc()


def record_beat_sent(region: str, task: str | None) -> None:
    _metrics.beat_sent_total.labels(region, task_label(task)).inc()
