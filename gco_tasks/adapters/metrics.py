"""Prometheus metrics of the fleet: their names, their bounded label values, and the small typed functions
that record them. Callers never touch a metric object.

Where it stands in the flow: beside every step. ``gco_tasks.worker.telemetry`` calls ``record_reconcile`` once
per ``reconcile_endpoint`` attempt and ``record_fanout`` once per fan-out, from what the room returned;
``locks`` calls ``record_lock_contention`` when a lock is found held and ``record_lock_released`` when
its holder lets go; the cluster gateway's single ``_call`` calls ``observe_kube_request`` for every API
request (the Event recorder for its own); ``fleet.Fleet`` passes the store's boto3 client once to
``instrument_dynamodb``. ``gco_tasks.worker.observability`` serves what is recorded here over HTTP and records
the Celery-level series itself (expired messages, tasks in progress, beat's sends).

Names follow controller-runtime's style (``<subsystem>_<what>_<unit|total>``), every series carries
``region``, and every other label takes its values from a closed set defined below (``ResultKind``,
``ErrorReason``, ``KUBE_VERBS`` ...): an endpoint name, a URL or an error message is never a label value,
so the number of series does not grow with the number of endpoints and no secret can leak into one.

Multiprocess (Celery's prefork pool): prometheus-client keeps each process's values in its own mmap
file under ``PROMETHEUS_MULTIPROC_DIR`` when that variable is set *before prometheus_client is first
imported* (it chooses its value class at import), so it must come from the process's environment
(the worker Deployment sets it), not from our settings. The worker's parent process empties that
directory at ``worker_init`` (before the pool forks: an emptyDir survives container restarts, and a
previous incarnation's files would otherwise be added to this one's), and its exporter aggregates every
child's file at scrape time. Files of dead children are kept, so counters and histograms never go
backwards when a child is replaced; only the ``livesum`` gauge files of dead children are removed
(``multiprocess.mark_process_dead``), by the exporter at each scrape for every pid that no longer exists
(a child killed by the hard time limit runs no shutdown hook). See ``gco_tasks.worker.observability``.
Gauges say how they aggregate across processes: ``mostrecent`` (the last value set by any process),
``max`` (timestamps) or ``livesum`` (live processes only).

Queue depth and the reconcile interval are not recorded here: the exporter computes them at scrape time
(``observability.QueueDepthCollector``), so that a stuck worker pool, which stops running fan-outs, still
reports a growing queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, get_args

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import RedisError

from gco_tasks.core.records import InvalidEndpointError, RegionState

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- bounded label values


class ResultKind(StrEnum):
    """``gco_reconcile_total{result}``: what one ``reconcile_endpoint`` ended with."""

    APPLIED = "applied"  # at least one object applied
    NOOP = "noop"  # already in sync: nothing written to the cluster
    DELETED = "deleted"  # objects deleted (endpoint deleted, stopped parts, orphans), none applied
    SKIPPED_LOCKED = "skipped_locked"  # another worker held the endpoint's lock
    ERROR = "error"  # the endpoint ends in error (invalid spec, refused write, ...)


class ErrorReason(StrEnum):
    """``gco_reconcile_errors_total{reason}``: why a reconcile failed, from a closed set."""

    INVALID_SPEC = "invalid_spec"  # the record fails validation (bad input is data: state error)
    KUBE_INVALID = "kube_invalid"  # 400/422: the API server refused an object we rendered
    KUBE_FORBIDDEN = "kube_forbidden"  # 401/403: credentials or RBAC
    KUBE_NOT_FOUND = "kube_not_found"  # 404 where something was expected (e.g. the namespace)
    KUBE_CONFLICT = "kube_conflict"  # 409
    KUBE_REJECTED = "kube_rejected"  # any other 4xx
    KUBE_UNAVAILABLE = "kube_unavailable"  # 429, 5xx, timeouts, connection failures (retried)
    DYNAMODB_THROTTLED = "dynamodb_throttled"
    DYNAMODB_ERROR = "dynamodb_error"
    REDIS_ERROR = "redis_error"
    TIME_LIMIT = "time_limit"  # the task's soft time limit
    INTERNAL = "internal"  # anything else: a bug


class LockName(StrEnum):
    """``gco_lock_*{lock}``: which kind of lock (never the endpoint it protects)."""

    ENDPOINT = "endpoint"
    FAN_OUT = "fan_out"


class FanoutOutcome(StrEnum):
    """``gco_fanout_messages_total{outcome}``: a message sent, or not sent because one still waits."""

    SENT = "sent"
    ALREADY_PENDING = "already_pending"


class DynamoOutcome(StrEnum):
    """``gco_dynamodb_requests_total{outcome}``."""

    OK = "ok"
    THROTTLED = "throttled"
    CONDITIONAL_FAILED = "conditional_failed"  # an expected answer to a conditional write
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"


class EventOutcome(StrEnum):
    """``gco_kube_events_total{outcome}``: what recording one Kubernetes Event did."""

    CREATED = "created"
    PATCHED = "patched"  # a repeat: the existing Event's series was updated
    FAILED = "failed"  # logged at debug; never fails the reconcile


#: ``gco_endpoints{state}``: the region states of endpoints; ``unknown`` for none or an unrecognised one.
ENDPOINT_STATES: Final[tuple[str, ...]] = (*get_args(RegionState), "unknown")
KUBE_VERBS: Final = frozenset({"get", "list", "watch", "create", "apply", "patch", "update", "delete"})
KUBE_RESOURCES: Final = frozenset(
    {"deployments", "services", "ingresses", "horizontalpodautoscalers", "events", "namespaces"}
)
#: The code label of a request that got no HTTP answer (connection refused, timeout), as client-go has it.
NO_RESPONSE: Final = "<error>"
OTHER: Final = "other"
THROTTLING_CODES: Final = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)

RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
FANOUT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCK_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


# --------------------------------------------------------------------------- pure label decisions


def reason_for_kube_status(status: int | None) -> ErrorReason:
    """The error reason of a failed Kubernetes request by HTTP status (None or 0: no answer)."""
    if not status or status == 429 or status >= 500:
        return ErrorReason.KUBE_UNAVAILABLE
    by_status = {
        400: ErrorReason.KUBE_INVALID,
        422: ErrorReason.KUBE_INVALID,
        401: ErrorReason.KUBE_FORBIDDEN,
        403: ErrorReason.KUBE_FORBIDDEN,
        404: ErrorReason.KUBE_NOT_FOUND,
        409: ErrorReason.KUBE_CONFLICT,
    }
    return by_status.get(status, ErrorReason.KUBE_REJECTED)


def classify_result(
    applied: int, deleted: int, error: bool = False, skipped_locked: bool = False
) -> ResultKind:
    """The ``result`` of one reconcile from what it did: skipped on the lock, else ended in error, else
    applied something, else only deleted, else nothing (``noop``)."""
    if skipped_locked:
        return ResultKind.SKIPPED_LOCKED
    if error:
        return ResultKind.ERROR
    if applied:
        return ResultKind.APPLIED
    return ResultKind.DELETED if deleted else ResultKind.NOOP


_TIME_LIMITS: Final = frozenset({"SoftTimeLimitExceeded", "TimeLimitExceeded"})


def reason_for_exception(error: BaseException) -> ErrorReason:
    """The reason of an exception that failed a reconcile, from what the libraries raise: an invalid
    record, a time limit, Redis, a Kubernetes answer (anything with a ``status`` attribute, an HTTP
    status or None for no answer, as ``ApiException`` and the gateway's errors have), a botocore error
    anywhere in the ``__cause__`` chain (the store wraps them); anything else is ``internal``."""
    if isinstance(error, InvalidEndpointError):
        return ErrorReason.INVALID_SPEC
    if type(error).__name__ in _TIME_LIMITS:
        return ErrorReason.TIME_LIMIT
    if isinstance(error, RedisError):
        return ErrorReason.REDIS_ERROR
    if hasattr(error, "status"):  # ApiException, the gateway's ClusterError (None: no answer)
        status = error.status
        if status is None or (isinstance(status, int) and not isinstance(status, bool)):
            return reason_for_kube_status(status)
    cause: BaseException | None = error
    while cause is not None:
        if type(cause).__module__.startswith("botocore"):
            code = (getattr(cause, "response", None) or {}).get("Error", {}).get("Code")
            throttled = code in THROTTLING_CODES
            return ErrorReason.DYNAMODB_THROTTLED if throttled else ErrorReason.DYNAMODB_ERROR
        cause = cause.__cause__
    return ErrorReason.INTERNAL


def kube_code(error: BaseException | None = None, status: int | None = None) -> str:
    """The ``code`` label of one request: the HTTP status of the answer (``status``, or the
    ``ApiException``'s), or ``<error>`` when no answer came (timeout, connection failure)."""
    if status is None and error is not None:
        status = getattr(error, "status", None)
    if isinstance(status, int) and 100 <= status <= 599:
        return str(status)
    return NO_RESPONSE


def kube_labels(verb: str, resource: str, code: str) -> tuple[str, str, str]:
    """``(verb, resource, code)`` held to their closed sets (anything else becomes ``other``)."""
    verb = verb.lower()
    code_ok = code == NO_RESPONSE or (len(code) == 3 and code.isdigit())
    return (
        verb if verb in KUBE_VERBS else OTHER,
        resource if resource in KUBE_RESOURCES else OTHER,
        code if code_ok else OTHER,
    )


def dynamo_outcome(status: int, error_code: str | None) -> DynamoOutcome:
    """What one DynamoDB answer means for ``gco_dynamodb_requests_total{outcome}``."""
    if status < 300:
        return DynamoOutcome.OK
    if error_code in THROTTLING_CODES:
        return DynamoOutcome.THROTTLED
    if error_code == "ConditionalCheckFailedException":
        return DynamoOutcome.CONDITIONAL_FAILED
    return DynamoOutcome.SERVER_ERROR if status >= 500 else DynamoOutcome.CLIENT_ERROR


def state_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Every state of ``ENDPOINT_STATES`` with its count (0 when absent, so a state that empties is
    reported as 0); counts of unrecognised states are added to ``unknown``."""
    result = dict.fromkeys(ENDPOINT_STATES, 0)
    for state, count in counts.items():
        result[state if state in result else "unknown"] += int(count)
    return result


def task_label(name: str | None) -> str:
    """A Celery task name as a label: ours (``gco_tasks.*``) as they are, anything else ``other``."""
    return name if name and name.startswith("gco_tasks.") and len(name) <= 64 else OTHER


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
    ``observability.install``. Returns the previous one."""
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
    """One finished ``reconcile_endpoint``: its result, its duration and, when it failed (wholly or for
    one object), the reason. An ``error`` result without a reason counts as ``internal``."""
    result = ResultKind(result_kind)
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


# --------------------------------------------------------------------------- DynamoDB (botocore hooks)

_STARTED = "gco_metrics_started"


def instrument_dynamodb(client: Any, region: str) -> None:
    """Count every call of a boto3 DynamoDB ``client`` (``gco_dynamodb_requests_total``,
    ``gco_dynamodb_request_duration_seconds``) through botocore's ``before-call``, ``after-call`` and
    ``after-call-error`` events. One count per API call: botocore's own retries happen inside it (a call
    throttled to the end counts as ``throttled``). Idempotent per client."""
    events = client.meta.events
    events.register("before-call.dynamodb", _before_call, unique_id="gco-metrics-before-call")
    events.register("after-call.dynamodb", _AfterCall(region), unique_id="gco-metrics-after-call")
    events.register("after-call-error.dynamodb", _AfterCallError(region), unique_id="gco-metrics-after-error")


def _before_call(context: dict[str, Any], **_: Any) -> None:
    context[_STARTED] = time.monotonic()


def _elapsed(context: Mapping[str, Any]) -> float:
    started = context.get(_STARTED)
    return time.monotonic() - started if isinstance(started, float) else 0.0


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class _AfterCall:
    region: str

    def __call__(
        self,
        event_name: str,
        http_response: Any,
        parsed: Mapping[str, Any],
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        error = parsed.get("Error") if isinstance(parsed, Mapping) else None
        code = error.get("Code") if isinstance(error, Mapping) else None
        outcome = dynamo_outcome(int(getattr(http_response, "status_code", 0) or 0), code)
        _safely(observe_dynamodb_request, self.region, _operation(event_name), outcome, _elapsed(context))


@dataclass(frozen=True)
class _AfterCallError:
    region: str

    def __call__(self, event_name: str, context: dict[str, Any], **_: Any) -> None:
        outcome = DynamoOutcome.CONNECTION_ERROR
        _safely(observe_dynamodb_request, self.region, _operation(event_name), outcome, _elapsed(context))


def _safely(record: Callable[..., None], *args: Any) -> None:
    """Hooks run inside the caller's request: a metrics problem must never fail it."""
    try:
        record(*args)
    except Exception:
        log.debug("could not record a metric", exc_info=True)
