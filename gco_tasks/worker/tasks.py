"""The Celery tasks: a few lines each, handing a flow (``fanout``, ``reconciler``, ``watchdog``, ``purge``,
``streamwatch``) this process's adapters, through ``telemetry``, which records what it did.

Where it stands in the flow: beat sends the cycle tasks to ``gco.<REGION>.cycle``; ``fan_out`` sends a
``reconcile_endpoint`` per endpoint that needs work. Retries and FAILED: ``taskbase``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
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

log = logging.getLogger(__name__)


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


#: A fan-out finding at least this many messages outstanding (waiting in the region's queue, or taken
#: by a worker and not yet done: a requeued reconcile waits for its countdown in a worker) defers (see
#: ``deferred``): whatever it would send would wait behind them, or be skipped as already pending.
BACKLOG_DEFER = 50
#: ... but never for long: the fan-out of one cycle in ``deferral_period`` runs whatever the queue.
BACKLOG_DEFER_MAX_CYCLES = 4
BACKLOG_DEFER_MAX_SECONDS = 60.0


def deferral_period(interval: float) -> int:
    """How many cycles a fan-out may defer to a backlog in a row, less one: at least
    ``BACKLOG_DEFER_MAX_CYCLES``, and as many as fit in ``BACKLOG_DEFER_MAX_SECONDS`` (a short interval
    would otherwise Scan the whole table every few seconds while the reconciles wait on it)."""
    return max(BACKLOG_DEFER_MAX_CYCLES, math.ceil(BACKLOG_DEFER_MAX_SECONDS / max(interval, 1e-3)))


def deferred(backlog: int, now: float, interval: float) -> bool:
    """Whether a fan-out defers to the messages still outstanding (``backlog``): it would spend a Scan
    and the LISTs (seconds at ten thousand endpoints, a pool process the reconciles need meanwhile, and
    the table's read capacity) to send what those messages already carry (a rollout's first looks are
    its own requeues). One cycle in ``deferral_period`` runs anyway, so a queue that never
    drains cannot hide a change in the table for long (a minute at most, or four cycles)."""
    cycle = int(now // max(interval, 1e-3))
    return backlog >= BACKLOG_DEFER and cycle % deferral_period(interval) != 0


def _backlog(queue: str) -> int:
    """Messages outstanding: waiting in ``queue`` (every priority; kombu's own count) plus those workers
    have taken and not yet acknowledged (kombu's ``unacked`` hash: running, or waiting for a countdown;
    this fan-out among them); 0 when Redis cannot tell."""
    try:
        with app.pool.acquire(block=True) as connection:
            channel = connection.default_channel
            waiting = int(channel.queue_declare(queue=queue, passive=True).message_count)
            with channel.conn_or_acquire() as client:
                taken = int(client.hlen(channel.unacked_key))
    except Exception as exc:
        log.debug("cannot count the messages outstanding in %s: %s", queue, exc)
        return 0
    return waiting + taken


@app.task(name="gco_tasks.fan_out", bind=True, ignore_result=True, base=CycleTask)  # type: ignore[untyped-decorator]
def fan_out(self: FleetTask) -> dict[str, Any]:
    """One reconcile cycle of the region: one message per endpoint that needs looking at; deferred
    while the messages a previous one sent are still outstanding (``deferred``)."""
    settings = self.fleet.settings
    now = time.time()
    backlog = _backlog(settings.queue)
    if deferred(backlog, now, settings.reconcile_interval_seconds):
        telemetry.record_deferred_fan_out(self.fleet, now)
        return {"skipped": f"{backlog} messages outstanding in {settings.queue}", "backlog": backlog}
    with _reconcile_sender(self.fleet) as send:
        return telemetry.run_fan_out(self.fleet, fanout.fan_out, send).as_dict()


@app.task(name="gco_tasks.reconcile_endpoint", bind=True, ignore_result=False)  # type: ignore[untyped-decorator]
def reconcile_endpoint(
    self: FleetTask, name: str, hint: dict[str, Any] | None = None, snapshot: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Converge one endpoint in this region; returns ``{"endpoint", "actions", "state", "result"}``.
    ``hint`` is the fan-out's (``core.hint.Hint``), parsed here once, never the record: the record is
    always read from the table. Without one (an ad hoc call) the endpoint's objects are read by name.
    ``snapshot``: the name older fan-outs sent the hint under (their messages, during a rolling upgrade).
    A reconcile that leaves a rollout in progress sends itself again after the countdown its backoff
    says (``ReconcileResult.requeue``), marked pending as a fan-out's message is."""
    parsed = parse_hint(hint if hint is not None else snapshot)
    result = telemetry.run_reconcile(self.fleet, reconciler.reconcile, name, parsed)
    if result.requeue is not None:
        settings = self.fleet.settings
        ttl = int(result.requeue.countdown) + settings.message_ttl_seconds
        # Pending like a fan-out's message (the reconcile clears it when it runs): no fan-out sends the
        # endpoint again meanwhile, and none is requeued while a fan-out's message is still waiting.
        if self.fleet.state.mark_pending_many([name], ttl)[name]:
            reconcile_endpoint.apply_async(
                args=[name],
                kwargs={"hint": result.requeue.hint.as_message()},
                queue=settings.queue,
                countdown=result.requeue.countdown,
                expires=ttl,
                ignore_result=True,
            )
    return self.finish(result)


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
