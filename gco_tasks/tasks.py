"""The Celery tasks: thin wrappers that give ``gco_tasks.fleet``'s operations a queue, retries and limits.

Where it stands in the flow: beat sends ``fan_out`` (and ``watchdog``, ``purge``) to ``gco.<REGION>``;
``fan_out`` sends one ``reconcile_endpoint`` per endpoint to the same queue; any worker of the region
runs any of them. Transient failures (Kubernetes 429/5xx/timeouts, DynamoDB throttling, Redis hiccups)
retry with exponential backoff and jitter, a bounded number of times; permanent ones are reported as
the endpoint's ``error`` status by the operation itself and do not loop.

Adapters (boto3, the Kubernetes client, Redis) are built lazily in each worker process, after the
prefork, and reused for every task that process runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gco_tasks import fleet as operations
from gco_tasks.celery_app import app, settings
from gco_tasks.cluster import TransientClusterError
from gco_tasks.fleet import Fleet
from gco_tasks.store import TransientStoreError

TRANSIENT_ERRORS = (TransientClusterError, TransientStoreError, RedisConnectionError, RedisTimeoutError)

RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": settings.task_max_retries,
}

_fleet: Fleet | None = None


def get_fleet() -> Fleet:
    """This process's adapters, built on first use."""
    global _fleet
    if _fleet is None:
        _fleet = Fleet.from_settings(settings)
    return _fleet


def use_fleet(fleet: Fleet | None) -> None:
    """Replace this process's adapters (tests and the sandbox point them at their own services)."""
    global _fleet
    _fleet = fleet


def _send_reconcile(fleet: Fleet, producer: Any) -> operations.Sender:
    def send(name: str, snapshot: dict[str, Any]) -> None:
        reconcile_endpoint.apply_async(
            args=[name],
            kwargs={"snapshot": snapshot} if snapshot else {},
            queue=fleet.settings.queue,
            expires=fleet.message_ttl_seconds,
            ignore_result=True,
            producer=producer,
        )

    return send


def _with_reconcile_sender(operation: Callable[[Fleet, operations.Sender], dict[str, Any]]) -> dict[str, Any]:
    """Run an operation that enqueues reconciles, reusing one producer for all its messages."""
    fleet = get_fleet()
    with app.producer_or_acquire() as producer:
        return operation(fleet, _send_reconcile(fleet, producer))


@app.task(name="gco_tasks.fan_out", ignore_result=True, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def fan_out() -> dict[str, Any]:
    """One reconcile cycle of the region: one message per endpoint that needs looking at."""
    return _with_reconcile_sender(operations.fan_out)


@app.task(name="gco_tasks.reconcile_endpoint", ignore_result=False, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def reconcile_endpoint(name: str, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """Converge one endpoint in this region; returns ``{"endpoint", "actions", "state"}``. Without a
    snapshot (an ad hoc call) it reads the record and the cluster itself."""
    return operations.reconcile_endpoint(get_fleet(), name, snapshot)


@app.task(name="gco_tasks.watchdog", ignore_result=True, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def watchdog() -> dict[str, Any]:
    """Withhold the Ingress of long-unready endpoints; reconcile those that recovered at once."""
    return _with_reconcile_sender(operations.watchdog)


@app.task(name="gco_tasks.purge", ignore_result=True, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def purge() -> dict[str, Any]:
    """Remove records that every target region reports deleted (conditional delete)."""
    return operations.purge(get_fleet())
