"""The Celery tasks: a few lines each, handing a flow (``fanout``, ``reconciler``, ``watchdog``, ``purge``,
``streamwatch``) this process's adapters, through ``telemetry``, which records what it did.

Where it stands in the flow: beat sends the cycle tasks to ``gco.<REGION>.cycle``; ``fan_out`` sends the
endpoints that need work, ten to a ``reconcile_endpoints`` message. Retries and FAILED: ``taskbase``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

from gco_tasks.core.errors import ReconcileFailed, TransientError
from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.core.ports import Sender
from gco_tasks.core.results import ReconcileResult
from gco_tasks.flows import fanout, reconciler, streamwatch
from gco_tasks.flows import purge as purge_flow
from gco_tasks.flows import watchdog as watchdog_flow
from gco_tasks.flows.concurrently import RECONCILES_IN_FLIGHT
from gco_tasks.worker import telemetry
from gco_tasks.worker.app import app
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.taskbase import CycleTask, FleetTask, first_retry_countdown

log = logging.getLogger(__name__)


#: Endpoints to one message from a fan-out (or the watchdog, or the stream): one message and one
#: consistent read of their records where each would cost its own, while a cold start of a few hundred
#: still leaves messages for every pool process.
BATCH_SIZE = 10
#: The most endpoints a ``reconcile_endpoints`` message may name (more is refused: not a message of ours).
BATCH_MAX = 100


@contextlib.contextmanager
def _reconcile_sender(fleet: Fleet) -> Iterator[Sender]:
    """Sends the endpoints a flow names, ``BATCH_SIZE`` to a ``reconcile_endpoints`` message (a lone
    one as a ``reconcile_endpoint``), reusing one producer for all of them. What was named is sent even
    when the flow fails after naming it (each is marked pending)."""
    with app.producer_or_acquire() as producer:
        waiting: list[tuple[str, Hint | None]] = []

        def flush() -> None:
            _send_reconciles(fleet, waiting, producer=producer)
            waiting.clear()

        def send(name: str, hint: Hint | None) -> None:
            waiting.append((name, hint))
            if len(waiting) >= BATCH_SIZE:
                flush()

        try:
            yield send
        finally:
            flush()


def _send_reconciles(
    fleet: Fleet, requests: list[tuple[str, Hint | None]], countdown: float | None = None, **options: Any
) -> None:
    """One message for ``requests``: a ``reconcile_endpoint`` for one endpoint, else a
    ``reconcile_endpoints`` whose time limits are a lone one's for each round of reconciles it runs."""
    settings = fleet.settings
    options.update(queue=settings.queue, ignore_result=True, countdown=countdown)
    options.setdefault("expires", settings.message_ttl_seconds)
    if len(requests) == 1:
        ((name, hint),) = requests
        kwargs = {"hint": hint.as_message()} if hint is not None else {}
        reconcile_endpoint.apply_async(args=[name], kwargs=kwargs, **options)
    elif requests:
        rounds = math.ceil(len(requests) / RECONCILES_IN_FLIGHT)  # a lone reconcile's limits each
        hints = {name: hint.as_message() for name, hint in requests if hint is not None}
        reconcile_endpoints.apply_async(
            args=[[name for name, _ in requests]],
            kwargs={"hints": hints} if hints else {},
            time_limit=settings.task_time_limit_seconds * rounds,
            soft_time_limit=settings.task_soft_time_limit_seconds * rounds,
            **options,
        )


#: A fan-out finding at least this many messages outstanding (waiting in the region's queue, or taken
#: by a worker and not yet done: a requeued reconcile waits for its countdown in a worker) defers (see
#: ``deferred``): whatever it would send would wait behind them, or be skipped as already pending.
#: Five batches: about fifty endpoints.
BACKLOG_DEFER = 5
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
    _requeue(self.fleet, [result])
    return self.finish(result)


#: A batch's result whole in its task-succeeded event (Flower shows it; Celery's default cuts at 1 KB).
BATCH_RESULT_REPR_BYTES = 64 * 1024


@app.task(  # type: ignore[untyped-decorator]
    name="gco_tasks.reconcile_endpoints",
    bind=True,
    ignore_result=False,
    resultrepr_maxsize=BATCH_RESULT_REPR_BYTES,
)
def reconcile_endpoints(
    self: FleetTask, names: list[str], hints: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``reconcile_endpoint`` for several endpoints (``BATCH_SIZE`` from a fan-out), their records read
    in one call; returns each one's result, in a list (a list, not a mapping: Celery's events show three
    levels of nesting, and each result's ``actions`` is the third). Each endpoint's failure is its own: a
    transient one is sent again alone (``reconcile_endpoint``, with its retries), a permanent one is
    in the answer. A message that does not name endpoints as a list of strings is refused (FAILED)."""
    requests = batch_requests(names, hints)
    answers = telemetry.run_reconcile_batch(self.fleet, requests)
    results = [answer for _, answer in answers if isinstance(answer, ReconcileResult)]
    _requeue(self.fleet, results)
    parsed = dict(requests)
    for name, answer in answers:
        if isinstance(answer, TransientError):
            _send_again(self.fleet, name, parsed.get(name), answer)
    return [_answer_dict(name, answer) for name, answer in answers]


def batch_requests(names: object, hints: object) -> list[tuple[str, Hint | None]]:
    """A ``reconcile_endpoints`` message's endpoints and their hints (each parsed as a lone message's),
    or ``ReconcileFailed`` naming what is wrong with it."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ReconcileFailed("reconcile_endpoints: names must be a list of endpoint names (strings)")
    if len(names) > BATCH_MAX:
        raise ReconcileFailed(f"reconcile_endpoints: {len(names)} names; at most {BATCH_MAX} to a message")
    given = hints if isinstance(hints, dict) else {}
    return [(name, parse_hint(given.get(name))) for name in names]


def _answer_dict(name: str, answer: ReconcileResult | Exception) -> dict[str, Any]:
    if isinstance(answer, ReconcileResult):
        return answer.as_dict()
    outcome = "retry" if isinstance(answer, TransientError) else "error"
    return {"endpoint": name, "actions": [], "state": None, "result": outcome, "error": str(answer)}


def _send_again(fleet: Fleet, name: str, hint: Hint | None, exc: TransientError) -> None:
    """An endpoint of a batch that failed transiently, sent again alone (its retries are then a lone
    reconcile's) after a first retry's countdown (never sooner than the server's ``Retry-After``),
    pending as a fan-out's message; logged as Celery logs a retry."""
    countdown = first_retry_countdown(exc)
    log.info("%s %s retry: Retry in %.2fs: %r", reconcile_endpoints.name, name, countdown, exc)
    ttl = math.ceil(countdown) + fleet.settings.message_ttl_seconds
    if fleet.state.mark_pending_many([name], ttl)[name]:
        _send_reconciles(fleet, [(name, hint)], countdown=countdown, expires=ttl)


def _requeue(fleet: Fleet, results: list[ReconcileResult]) -> None:
    """A reconcile that leaves a rollout in progress sends itself again after the countdown its backoff
    says (``ReconcileResult.requeue``), marked pending as a fan-out's message is; those of one batch with
    the same countdown go together."""
    settings = fleet.settings
    by_countdown: dict[float, list[tuple[str, Hint | None]]] = {}
    for result in results:
        if result.requeue is not None:
            by_countdown.setdefault(result.requeue.countdown, []).append(
                (result.endpoint, result.requeue.hint)
            )
    for countdown, requests in by_countdown.items():
        ttl = int(countdown) + settings.message_ttl_seconds
        # Pending like a fan-out's message (the reconcile clears it when it runs): no fan-out sends the
        # endpoint again meanwhile, and none is requeued while a fan-out's message is still waiting.
        marked = fleet.state.mark_pending_many([name for name, _ in requests], ttl)
        due = [(name, hint) for name, hint in requests if marked[name]]
        for start in range(0, len(due), BATCH_SIZE):
            _send_reconciles(fleet, due[start : start + BATCH_SIZE], countdown=countdown, expires=ttl)


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
