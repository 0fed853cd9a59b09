"""The DynamoDB client's calls counted (``gco_dynamodb_requests_total``, ``..._duration_seconds``) through
botocore's event hooks.

Where it stands in the flow: ``fleet.Fleet`` passes the store's boto3 client once to ``instrument_dynamodb``;
from then on every call records itself through ``metrics.observe_dynamodb_request``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gco_tasks.adapters.metric_labels import DynamoOutcome, dynamo_outcome
from gco_tasks.adapters.metrics import observe_dynamodb_request

log = logging.getLogger(__name__)


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
