"""The Celery app: broker, queue, reliability settings, the beat schedule of one region, and the base
class of every task.

Where it stands in the flow: the frame around everything. ``celery -A gco_tasks worker|beat|flower|call``
finds ``app`` here (through ``gco_tasks.app``). Each region runs its own Redis and its own queue
``gco.<REGION>``; beat runs RedBeat, whose lock in Redis lets two beats run while only one schedules.
The app names its tasks module (``include``) and never imports it, so there is no import cycle; the
settings are read from the environment when the configuration is first needed (a worker or beat
starting, a ``celery call``), not when this module is imported.

``FleetTask`` does what every task shares: this process's adapters (built on first use, after the
prefork), retries with backoff for ``TransientError``, and the task's end for a ``ReconcileResult``:
a permanent failure raises ``ReconcileFailed`` (FAILED, not retried) after the status was written.

Settings, with why (see DESIGN.md):
- late acks + reject on worker lost: a killed worker's task is redelivered, not lost;
- prefetch 1: a slow endpoint does not hold others hostage in a worker's buffer;
- visibility timeout well above the hard time limit: Redis does not redeliver a task still running;
- soft then hard time limits; cancel running tasks when the broker connection is lost (they would be
  redelivered anyway, and must not run twice at once for long);
- beat entries expire after one interval: a missed cycle is dropped, not piled up;
- task events on, for Flower; results are kept only for ad hoc ``reconcile_endpoint`` calls (fan-out
  sends its messages with ``ignore_result``), so the periodic path needs no result backend;
- transient errors retry with exponential backoff (2 s doubling, at most 60 s) and jitter, at most
  ``TASK_MAX_RETRIES`` times; permanent and infrastructure errors are not retried.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Celery, Task, bootsteps

from gco_tasks import preflight
from gco_tasks.config import Settings, load_settings
from gco_tasks.conventions import RegionKeys
from gco_tasks.errors import ReconcileFailed, TransientError

if TYPE_CHECKING:
    from gco_tasks.fleet import Fleet
    from gco_tasks.reconciler import ReconcileResult

log = logging.getLogger(__name__)

HEARTBEAT_PERIOD_SECONDS = 10.0


class HeartbeatFile(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches ``WORKER_HEARTBEAT_FILE`` every 10 s from the worker's own timer, so the pod's liveness
    probe can tell a wedged worker from a busy one without ``celery inspect ping`` (which needs the
    broker and costs a round trip per probe)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.path = Path(worker.app.conf.gco_worker_heartbeat_file)
        self.timer_entry: Any = None

    def start(self, worker: Any) -> None:
        self.touch()
        self.timer_entry = worker.timer.call_repeatedly(HEARTBEAT_PERIOD_SECONDS, self.touch, priority=10)

    def stop(self, worker: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()

    def touch(self) -> None:
        try:
            self.path.touch()
        except OSError as exc:
            log.warning("cannot touch heartbeat file %s: %s", self.path, exc)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery and RedBeat setting, derived from ours."""
    queue = settings.queue
    prefix = RegionKeys(settings.region).redbeat_prefix
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_seconds,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
        },
        "result_backend": settings.redis_url,
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
        "beat_scheduler": "gco_tasks.preflight:CheckedRedBeatScheduler",  # RedBeat, refusing to guess REGION
        "beat_max_loop_interval": 10,
        "redbeat_redis_url": settings.redis_url,
        "redbeat_redis_options": {},
        "redbeat_key_prefix": prefix,
        "redbeat_lock_timeout": 60,
        "beat_schedule": beat_schedule(settings),
        "gco_worker_heartbeat_file": settings.worker_heartbeat_file,
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

    return {
        "fan-out": entry("gco_tasks.fan_out", settings.reconcile_interval_seconds),
        "watchdog": entry("gco_tasks.watchdog", settings.watchdog_interval_seconds),
        "purge": entry("gco_tasks.purge", settings.purge_interval_seconds),
    }


_settings: Settings | None = None
_fleet: Fleet | None = None


def current_settings() -> Settings:
    """This process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def use_fleet(fleet: Fleet | None) -> None:
    """Replace this process's adapters (tests and the sandbox point them at their own services)."""
    global _fleet
    _fleet = fleet


class FleetTask(Task):  # type: ignore[misc]
    """The base of every gco-tasks task: adapters, retries, and how a reconcile's result ends the task."""

    autoretry_for = (TransientError,)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True

    @property
    def max_retries(self) -> int:
        """``TASK_MAX_RETRIES``, read with the rest of the configuration (not at import)."""
        return int(self.app.conf.gco_task_max_retries)

    @property
    def fleet(self) -> Fleet:
        """This process's adapters, built on first use (after the prefork) and reused."""
        global _fleet
        if _fleet is None:
            from gco_tasks.fleet import Fleet  # the adapters' libraries load in workers only

            _fleet = Fleet.from_settings(current_settings())
        return _fleet

    def finish(self, result: ReconcileResult) -> dict[str, Any]:
        """The task's JSON result, or ``ReconcileFailed`` (FAILED, no retry) for a permanent failure."""
        outcome = result.as_dict()
        if result.failed:
            raise ReconcileFailed(f"{result.endpoint}: {result.error}", outcome)
        return outcome


def create_app() -> Celery:
    """The app; its configuration comes from ``current_settings()`` when first needed."""
    celery_app = Celery("gco_tasks", include=["gco_tasks.tasks"], task_cls=FleetTask)
    celery_app.add_defaults(lambda: celery_config(current_settings()))
    celery_app.steps["worker"].add(HeartbeatFile)
    return celery_app


app = create_app()
# Worker and beat refuse to start without REGION (a worker also without a readable kubeconfig).
preflight.install(current_settings)
