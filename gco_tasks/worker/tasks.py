"""The Celery tasks: a few lines each, handing a flow (``fanout``, ``reconciler``, ``watchdog``, ``purge``,
``streamwatch``) this process's adapters, through ``telemetry``, which records what it did.

Where it stands in the flow: beat sends the cycle tasks to ``gco.<REGION>``; ``fan_out`` sends a
``reconcile_endpoint`` per endpoint that needs work. Retries and FAILED: ``taskbase``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.core.ports import Sender
from gco_tasks.flows import fanout, reconciler, streamwatch
from gco_tasks.flows import purge as purge_flow
from gco_tasks.flows import watchdog as watchdog_flow
from gco_tasks.worker import telemetry
from gco_tasks.worker.app import app
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.taskbase import CycleTask, FleetTask


@contextlib.contextmanager
def _reconcile_sender(fleet: Fleet) -> Iterator[Sender]:
    """Sends ``reconcile_endpoint`` messages for a flow, reusing one producer for all of them."""
    with app.producer_or_acquire() as producer:

        def send(name: str, hint: Hint | None) -> None:
            reconcile_endpoint.apply_async(
                args=[name],
                kwargs={"hint": hint.as_message()} if hint is not None else {},
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
        return telemetry.run_fan_out(self.fleet, fanout.fan_out, send).as_dict()


@app.task(name="gco_tasks.reconcile_endpoint", bind=True, ignore_result=False)  # type: ignore[untyped-decorator]
def reconcile_endpoint(
    self: FleetTask, name: str, hint: dict[str, Any] | None = None, snapshot: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Converge one endpoint in this region; returns ``{"endpoint", "actions", "state", "result"}``.
    ``hint`` is the fan-out's (``core.hint.Hint``), parsed here once, never the record: the record is
    always read from the table. Without one (an ad hoc call) the endpoint's objects are read by name.
    ``snapshot``: the name older fan-outs sent the hint under (their messages, during a rolling upgrade)."""
    parsed = parse_hint(hint if hint is not None else snapshot)
    return self.finish(telemetry.run_reconcile(self.fleet, reconciler.reconcile, name, parsed))


@app.task(name="gco_tasks.watchdog", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def watchdog(self: FleetTask) -> dict[str, Any]:
    """Withhold the Ingress of long-unready endpoints; reconcile those that recovered at once."""
    with _reconcile_sender(self.fleet) as send:
        return telemetry.run_watchdog(self.fleet, watchdog_flow.watchdog, send).as_dict()


@app.task(name="gco_tasks.purge", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def purge(self: FleetTask) -> dict[str, Any]:
    """Remove records that every target region reports deleted (conditional delete)."""
    return purge_flow.purge(self.fleet).as_dict()


@app.task(name="gco_tasks.stream_poll", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def stream_poll(self: FleetTask) -> dict[str, Any]:
    """Reconcile now the endpoints whose desired state changed in the table's stream (optional)."""
    with _reconcile_sender(self.fleet) as send:
        return streamwatch.poll_stream(self.fleet, send).as_dict()
