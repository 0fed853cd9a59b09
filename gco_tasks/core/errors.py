"""The fleet's errors, sorted by what to do about them.

Where it stands in the flow: everywhere a call can fail. The adapters (``store``, ``cluster``,
``locks``) translate their library's exceptions (botocore, the Kubernetes client and urllib3, redis)
into these, so nothing above them catches a library exception; the flows and the Celery tasks act on
the three kinds:

- ``TransientError``: worth retrying (throttling, 5xx, timeouts, lost connections). Tasks retry with
  exponential backoff and jitter, a bounded number of times.
- ``PermanentError``: refused for what this record asks (a 422 from the API server, an invalid spec).
  The endpoint's status says why, nothing retries, the task ends FAILED.
- ``InfrastructureError``: the region's plumbing is missing or misconfigured (no table, no permission,
  Redis refusing commands). Retrying at once will not help and the endpoint is not to blame: the task
  fails without retry and the next cycle tries again.

Pure module: no imports of its own.
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
