"""The fleet's errors, sorted by what to do about them; adapters raise these, never a library's.

Where it stands in the flow: everywhere a call can fail; the tasks act on the three kinds (retry with
backoff; report the endpoint's ``error`` and end FAILED; skip the cycle). Pure. The whole tree:

- ``GcoError``
    - ``TransientError``: retry with backoff and jitter, a bounded number of times
        - ``adapters.cluster.TransientClusterError`` (409, 429, 5xx, timeouts, lost connections)
        - ``adapters.dynamo_client.TransientStoreError`` (throttling, 5xx, connection failures)
        - ``adapters.locks.RegionStateUnavailableError`` (Redis does not answer)
        - ``adapters.ratelimit.WriteThrottled`` (the region's write budget: ``retry_after``)
        - ``adapters.streams.StreamStateError``
    - ``PermanentError``: refused for what this record asks; its status says why, no retry, FAILED
        - ``ReconcileFailed`` (the task's end for a failed ``ReconcileResult``)
        - ``core.records.InvalidEndpointError`` (also a ``ValueError``)
            - ``adapters.store.MalformedRecordError``
        - ``adapters.cluster.PermanentClusterError`` (a write refused with another 4xx, e.g. 422)
    - ``InfrastructureError``: the region's plumbing is wrong; no retry, the next cycle tries again
        - ``adapters.cluster.ClusterUnavailableError`` (a LIST refused, no configuration)
        - ``adapters.dynamo_client.StoreUnavailableError`` (no table, no permission)
        - ``adapters.locks.RegionStateError`` (Redis refusing commands)
        - ``adapters.streams.NoStreamError`` (streams not enabled)
    - ``adapters.cluster.ClusterError``: base of the three cluster errors above
    - ``adapters.dynamo_client.StoreError`` (also a ``RuntimeError``): base of the two above, and of the
      CLI's ``adapters.store.EndpointNotFoundError`` (a ``LookupError``), ``EndpointExistsError``,
      ``EndpointDeletedError``, ``ConcurrentUpdateError``
    - ``cli.diff.RecordMissing``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GcoError(Exception):
    """A failure the fleet knows how to act on (see the subclasses)."""


class TransientError(GcoError):
    """Retry with backoff: the same call may well succeed in a moment. ``retry_after`` is the delay the
    failing service asked for (an HTTP ``Retry-After``), in seconds, when it named one: the retry waits at
    least that long."""

    retry_after: float | None = None


class PermanentError(GcoError):
    """Refused for what this record asks: report it as the endpoint's error, never retry."""


class InfrastructureError(GcoError):
    """The region's infrastructure is missing or misconfigured: skip this cycle, no retry."""


class ReconcileFailed(PermanentError):
    """Raised by the ``reconcile_endpoint`` task after the endpoint's error status has been written, so
    Celery records the task as FAILED (not retried). ``result`` is the task's usual JSON result.

    The constructor takes exactly what ``args`` holds (message, result), so Celery can rebuild the
    exception from its JSON form on the caller's side."""

    def __init__(self, message: str, result: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, dict(result or {}))
        self.result: dict[str, Any] = dict(result or {})

    def __str__(self) -> str:
        return str(self.args[0])
