"""The label taxonomy of the fleet's metrics: every label value comes from a closed set defined here, so
the number of series never grows with the number of endpoints and no name, URL or secret becomes one.

Where it stands in the flow: under ``metrics`` (which records) and the adapters that pick a label (the
cluster gateway's ``kube_code``, the lock's ``LockName``). Pure, but for telling library errors apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, get_args

from redis.exceptions import RedisError

from gco_tasks.core.records import InvalidEndpointError, RegionState

# --------------------------------------------------------------------------- bounded label values


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
