"""The Celery app: broker, queue, reliability settings, the beat schedule of one region, and the base
class of every task.

Where it stands in the flow: the frame around everything. ``celery -A gco_tasks worker|beat|flower|call``
finds ``app`` here (through ``gco_tasks.app``). Each region runs its own Redis and its own queue
``gco.<REGION>``; beat runs RedBeat, whose lock in Redis lets two beats run while only one schedules.
The app names its tasks module (``include``) and never imports it, so there is no import cycle; the
settings are read from the environment when the configuration is first needed (a worker or beat
starting, a ``celery call``), not when this module is imported. ``observability.install`` connects what
worker and beat processes show of themselves (the Prometheus exporter on ``METRICS_PORT``,
``LOG_FORMAT``, the task id on every log line).

``FleetTask`` does what every task shares: this process's adapters (built on first use, after the
prefork), retries with backoff for ``TransientError``, and the task's end for a ``ReconcileResult``:
a permanent failure raises ``ReconcileFailed`` (FAILED, not retried) after the status was written.

Settings, with why (see DESIGN.md):
- late acks + reject on worker lost: a killed worker's task is redelivered, not lost;
- prefetch 1: a slow endpoint does not hold others hostage in a worker's buffer;
- visibility timeout = the longest retry countdown + the hard time limit + a margin
  (``Settings.visibility_timeout_seconds``, 240 s by default): Redis does not redeliver a task still
  running or waiting for its retry, and a dead worker's task comes back within minutes, not an hour;
- soft then hard time limits; cancel running tasks when the broker connection is lost (they would be
  redelivered anyway, and must not run twice at once for long);
- beat entries expire after one interval: a missed cycle is dropped, not piled up;
- task events on, for Flower; results are kept only for ad hoc ``reconcile_endpoint`` calls (fan-out
  sends its messages with ``ignore_result``), so the periodic path needs no result backend;
- transient errors retry with exponential backoff (2 s doubling, at most 60 s) and jitter, at most
  ``TASK_MAX_RETRIES`` times, and never sooner than a server's ``Retry-After`` (capped at 60 s);
  permanent and infrastructure errors are not retried. The periodic tasks (``CycleTask``: fan-out,
  watchdog, purge) do not retry at all: a cycle that cannot read the table or the cluster logs that it
  skipped and why, and the next cycle tries again.

Redis, in every form ``REDIS_URL`` takes (``gco_tasks.core.redis_target``): the broker, the result backend
and RedBeat get the same server, TLS verified, Sentinel followed, and no setting Celery shows holds the
password (``gco_tasks.worker.broker``).

Liveness: the worker touches ``WORKER_HEARTBEAT_FILE`` only after a PING of Redis answered
(``HeartbeatFile``), beat touches ``BEAT_HEARTBEAT_FILE`` after each tick that reached Redis
(``gco_tasks.worker.beat``): the probes in ``k8s/`` fail when the broker has been away for their stated time.

Start-up: ``startup_problem`` is every check a worker or beat makes before it connects anywhere (the
settings, the region, and for a worker the Kubernetes configuration and API server); a problem stops
the process with one line naming the setting, exit code 1, no traceback.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from celery import Celery, Task, bootsteps, signals

from gco_tasks.core.config import (
    RETRY_DELAY_MAX_SECONDS,
    ConfigError,
    Settings,
    load_settings,
    region_problem,
)
from gco_tasks.core.conventions import RegionKeys
from gco_tasks.core.errors import GcoError, ReconcileFailed, TransientError
from gco_tasks.core.redis_target import RedisTarget
from gco_tasks.worker import observability, preflight
from gco_tasks.worker.broker import guard_detached_redis_channels, redis_config

if TYPE_CHECKING:
    import redis

    from gco_tasks.flows.reconciler import ReconcileResult
    from gco_tasks.worker.fleet import Fleet

log = logging.getLogger(__name__)

#: Bound of the liveness PING (connect, then reply), seconds: it runs on the worker's event loop.
PING_TIMEOUT_SECONDS = 2.0
#: Bound of the Kubernetes API check at a worker's start, seconds.
STARTUP_API_TIMEOUT_SECONDS = 5.0


class HeartbeatFile(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches ``WORKER_HEARTBEAT_FILE`` every ``HEARTBEAT_INTERVAL_SECONDS`` from the worker's own timer,
    but only after Redis answered a PING (bounded by ``PING_TIMEOUT_SECONDS``): the pod's liveness probe
    then fails for a worker that is wedged *or* cannot reach its broker, and passes again once Redis is
    back, without the cost of a ``celery inspect ping`` broadcast."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.path = Path(worker.app.conf.gco_worker_heartbeat_file)
        self.period = float(worker.app.conf.gco_heartbeat_interval)
        self.target: RedisTarget = current_settings().redis_target
        self.timer_entry: Any = None
        self._client: redis.Redis | None = None
        self.broker_was_up = True

    def start(self, worker: Any) -> None:
        self.touch()
        self.timer_entry = worker.timer.call_repeatedly(self.period, self.touch, priority=10)

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()

    def broker_answers(self) -> bool:
        """A PING of the region's Redis (its primary, for Sentinel) answered within the bound."""
        from redis.exceptions import RedisError

        from gco_tasks.adapters.locks import redis_client

        if self._client is None:
            self._client = redis_client(
                self.target, socket_timeout=PING_TIMEOUT_SECONDS, socket_connect_timeout=PING_TIMEOUT_SECONDS
            )
        try:
            return bool(self._client.ping())
        except RedisError as exc:
            if self.broker_was_up:
                log.warning("heartbeat: Redis does not answer (%s); liveness file not touched", exc)
            return False

    def touch(self) -> None:
        up = self.broker_answers()
        if up and not self.broker_was_up:
            log.info("heartbeat: Redis answers again; liveness file touched")
        self.broker_was_up = up
        if not up:
            return
        try:
            self.path.touch()
        except OSError as exc:
            log.warning("cannot touch heartbeat file %s: %s", self.path, exc)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery and RedBeat setting, derived from ours."""
    queue = settings.queue
    prefix = RegionKeys(settings.region).redbeat_prefix
    return {
        **redis_config(settings),
        "broker_connection_retry_on_startup": True,
        "result_expires": 3600,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # RedBeat, kept alive through Redis restarts and failovers (gco_tasks/worker/beat.py).
        "beat_scheduler": "gco_tasks.worker.beat:FleetScheduler",
        "beat_max_loop_interval": settings.heartbeat_interval_seconds,
        "redbeat_key_prefix": prefix,
        "redbeat_lock_timeout": settings.beat_lock_timeout_seconds,
        "beat_schedule": beat_schedule(settings),
        "gco_worker_heartbeat_file": settings.worker_heartbeat_file,
        "gco_beat_heartbeat_file": settings.beat_heartbeat_file,
        "gco_heartbeat_interval": settings.heartbeat_interval_seconds,
        "gco_task_max_retries": settings.task_max_retries,
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """fan_out every RECONCILE_INTERVAL_SECONDS, watchdog and purge on their own schedules; each entry
    expires after its own interval so a missed run is dropped rather than piled up."""

    def entry(task: str, every: int) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": float(every),
            "options": {"queue": settings.queue, "expires": every},
        }

    schedule = {
        "fan-out": entry("gco_tasks.fan_out", settings.reconcile_interval_seconds),
        "watchdog": entry("gco_tasks.watchdog", settings.watchdog_interval_seconds),
        "purge": entry("gco_tasks.purge", settings.purge_interval_seconds),
    }
    if settings.stream_poll_seconds:  # optional: react to the table's stream between cycles
        schedule["stream-poll"] = entry("gco_tasks.stream_poll", settings.stream_poll_seconds)
    return schedule


_settings: Settings | None = None
_fleet: Fleet | None = None


def current_settings() -> Settings:
    """This process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def _configuration() -> dict[str, Any]:
    """The app's configuration; a settings error stops the process with one line, not a traceback."""
    try:
        return celery_config(current_settings())
    except ConfigError as exc:
        raise SystemExit(f"gco-tasks: cannot start: {exc}") from None


# --------------------------------------------------------------------------- start-up checks


def startup_problem(role: Literal["worker", "beat"]) -> str | None:
    """Why this worker or beat cannot start, in one sentence naming the setting; None when it can.
    Settings (``REDIS_URL`` parsed, with its password masked), the region (``KNOWN_REGIONS``), and for a
    worker the Kubernetes configuration (in-cluster or ``KUBECONFIG``) and an answer from its API
    server within ``STARTUP_API_TIMEOUT_SECONDS``. Beat talks to Redis only. An unreachable Redis is
    not a problem here: Celery waits for it (``broker_connection_retry_on_startup``)."""
    try:
        settings = current_settings()
    except ConfigError as exc:
        return str(exc)
    problem = region_problem(settings)
    if problem is None and role == "worker":
        problem = kubernetes_problem(settings)
    return problem


def kubernetes_problem(settings: Settings) -> str | None:
    """No Kubernetes configuration, or an API server that does not answer ``/version``."""
    from kubernetes.client import VersionApi

    from gco_tasks.adapters.cluster import ClusterUnavailableError, load_api_client

    problem = preflight.kubeconfig_problem(os.environ, Path.home())
    if problem:
        return problem
    try:
        api_client = load_api_client()
    except ClusterUnavailableError as exc:
        return f"KUBECONFIG: {exc}"
    host = api_client.configuration.host
    timeout = min(STARTUP_API_TIMEOUT_SECONDS, settings.k8s_api_timeout)
    try:
        VersionApi(api_client).get_code(_request_timeout=timeout)
    except Exception as exc:  # any failure: one sentence, the first line of its reason
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return (
            f"the Kubernetes API server {host} (from KUBECONFIG or in-cluster) did not answer within "
            f"{timeout:.0f} s: {type(exc).__name__}: {reason}"
        )
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
    return None


def check_startup(role: Literal["worker", "beat"]) -> None:
    """Stop the process with ``gco-tasks: cannot start: <problem>`` on stderr (exit code 1) when
    ``startup_problem`` finds one."""
    problem = startup_problem(role)
    if problem:
        raise SystemExit(f"gco-tasks: cannot start: {problem}")


def _check_worker(**_: Any) -> None:
    check_startup("worker")


def use_fleet(fleet: Fleet | None) -> None:
    """Replace this process's adapters (tests and the sandbox point them at their own services)."""
    global _fleet
    _fleet = fleet


class FleetTask(Task):  # type: ignore[misc]
    """The base of every gco-tasks task: adapters, retries, and how a reconcile's result ends the task."""

    autoretry_for: tuple[type[Exception], ...] = (TransientError,)
    throws = (ReconcileFailed,)  # an expected end: logged without a traceback, still FAILED
    retry_backoff = 2
    retry_backoff_max = RETRY_DELAY_MAX_SECONDS
    retry_jitter = True

    def retry(self, *args: Any, exc: BaseException | None = None, **options: Any) -> Any:
        """Celery's retry, never sooner than the ``Retry-After`` a throttled server asked for (plus up to
        a second of jitter, so throttled workers do not come back in step), capped at the longest
        backoff (the visibility timeout is derived from that cap)."""
        asked = getattr(exc, "retry_after", None)
        countdown = options.get("countdown")
        if asked is not None and (countdown is None or countdown < asked):
            options["countdown"] = min(float(asked) + random.uniform(0, 1), float(RETRY_DELAY_MAX_SECONDS))
        return super().retry(*args, exc=exc, **options)

    @property
    def max_retries(self) -> int:
        """``TASK_MAX_RETRIES``, read with the rest of the configuration (not at import)."""
        return int(self.app.conf.gco_task_max_retries)

    @property
    def fleet(self) -> Fleet:
        """This process's adapters, built on first use (after the prefork) and reused."""
        global _fleet
        if _fleet is None:
            from gco_tasks.worker.fleet import Fleet  # the adapters' libraries load in workers only

            _fleet = Fleet.from_settings(current_settings())
        return _fleet

    def finish(self, result: ReconcileResult) -> dict[str, Any]:
        """The task's JSON result, or ``ReconcileFailed`` (FAILED, no retry) for a permanent failure."""
        outcome = result.as_dict()
        if result.failed:
            raise ReconcileFailed(f"{result.endpoint}: {result.error}", outcome)
        return outcome


class CycleTask(FleetTask):
    """A periodic task (fan-out, watchdog, purge): never retried, since beat sends the next cycle anyway.
    A cycle that fails (the table or the cluster cannot be read, Redis is away) logs that it skipped and
    why, and ends with ``{"skipped": reason}``; nothing was sent, deleted or reported from a failed read."""

    autoretry_for = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except GcoError as exc:
            log.warning("%s: cycle skipped, the next one tries again: %s", self.name, exc)
            return {"skipped": str(exc)}


def create_app() -> Celery:
    """The app; its configuration comes from ``current_settings()`` when first needed. A worker checks
    ``startup_problem`` when it starts (Celery's ``celeryd_init``, before it connects anywhere); beat
    checks it in its scheduler (``gco_tasks.worker.beat``)."""
    guard_detached_redis_channels()
    celery_app = Celery("gco_tasks", include=["gco_tasks.worker.tasks"], task_cls=FleetTask)
    celery_app.add_defaults(_configuration)
    celery_app.steps["worker"].add(HeartbeatFile)
    return celery_app


signals.celeryd_init.connect(_check_worker, weak=False)


app = create_app()
observability.install(app, current_settings)
