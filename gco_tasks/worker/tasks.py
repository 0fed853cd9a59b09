"""The Celery tasks: a few lines each, handing a room (``fanout``, ``reconciler``, ``watchdog``,
``purge``) this process's adapters.

Where it stands in the flow: beat sends ``fan_out`` (and ``watchdog``, ``purge``) to ``gco.<REGION>``;
``fan_out`` sends a ``reconcile_endpoint`` for each endpoint that needs work to the same queue; any
worker of the region runs any of them. What they share (adapters, retries, how a result ends the task) is
``gco_tasks.worker.app.FleetTask``: transient failures retry with backoff and jitter, a bounded number of
times; a permanent one (a 422, an invalid record) is written as the endpoint's ``error`` status and
ends the task FAILED, without retry. The periodic tasks (``CycleTask``) never retry: a cycle that cannot
read the table or the cluster is skipped, with a warning saying why, and the next one tries again. Each
task runs its room through ``gco_tasks.worker.telemetry``, which records what it did (metrics, Kubernetes
Events, a log line per reconcile).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from gco_tasks.core.ports import Sender
from gco_tasks.flows import fanout, reconciler, streamwatch
from gco_tasks.flows import purge as purge_room
from gco_tasks.flows import watchdog as watchdog_room
from gco_tasks.worker import telemetry
from gco_tasks.worker.app import CycleTask, FleetTask, app
from gco_tasks.worker.fleet import Fleet


@contextlib.contextmanager
def _reconcile_sender(fleet: Fleet) -> Iterator[Sender]:
    """Sends ``reconcile_endpoint`` messages for a room, reusing one producer for all of them."""
    with app.producer_or_acquire() as producer:

        def send(name: str, snapshot: dict[str, Any]) -> None:
            reconcile_endpoint.apply_async(
                args=[name],
                kwargs={"snapshot": snapshot} if snapshot else {},
                queue=fleet.settings.queue,
                expires=fleet.settings.message_ttl_seconds,
                ignore_result=True,
                producer=producer,
            )

        yield send


@app.task(name="gco_tasks.fan_out", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def fan_out(self: FleetTask) -> dict[str, Any]:
    """One reconcile cycle of the region: one message per endpoint that needs looking at."""
    with _reconcile_sender(self.fleet) as send:
        return telemetry.observe_fan_out(self.fleet, fanout.fan_out, send)


@app.task(name="gco_tasks.reconcile_endpoint", bind=True, ignore_result=False)  # type: ignore[untyped-decorator]
def reconcile_endpoint(self: FleetTask, name: str, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """Converge one endpoint in this region; returns ``{"endpoint", "actions", "state", "result"}``.
    ``snapshot`` is the fan-out's hint (``observe.Hint``), never the record: the record is always read
    from the table. Without one (an ad hoc call) the endpoint's objects are read by name."""
    return self.finish(telemetry.observe_reconcile(self.fleet, reconciler.reconcile, name, snapshot))


@app.task(name="gco_tasks.watchdog", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def watchdog(self: FleetTask) -> dict[str, Any]:
    """Withhold the Ingress of long-unready endpoints; reconcile those that recovered at once."""
    with _reconcile_sender(self.fleet) as send:
        return telemetry.observe_watchdog(self.fleet, watchdog_room.watchdog, send)


@app.task(name="gco_tasks.purge", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def purge(self: FleetTask) -> dict[str, Any]:
    """Remove records that every target region reports deleted (conditional delete)."""
    return purge_room.purge(self.fleet)


@app.task(name="gco_tasks.stream_poll", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def stream_poll(self: FleetTask) -> dict[str, Any]:
    """Reconcile now the endpoints whose desired state changed in the table's stream (optional)."""
    with _reconcile_sender(self.fleet) as send:
        return streamwatch.poll_stream(self.fleet, send)
