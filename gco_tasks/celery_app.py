"""The Celery app: broker, queue, reliability settings and the beat schedule of one region.

Where it stands in the flow: the frame around everything. ``celery -A gco_tasks worker|beat|flower|call``
finds ``app`` here (through ``gco_tasks.app``). Each region runs its own Redis and its own queue
``gco.<REGION>``; beat runs RedBeat, whose lock in Redis lets two beats run while only one schedules.

Settings, with why (see DESIGN.md):
- late acks + reject on worker lost: a killed worker's task is redelivered, not lost;
- prefetch 1: a slow endpoint does not hold others hostage in a worker's buffer;
- visibility timeout well above the hard time limit: Redis does not redeliver a task still running;
- soft then hard time limits; cancel running tasks when the broker connection is lost (they would be
  redelivered anyway, and must not run twice at once for long);
- beat entries expire after one interval: a missed cycle is dropped, not piled up;
- task events on, for Flower; results are kept only for ad hoc ``reconcile_endpoint`` calls (fan-out
  sends its messages with ``ignore_result``), so the periodic path needs no result backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from celery import Celery, bootsteps

from gco_tasks import preflight
from gco_tasks.config import Settings, load_settings

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
    prefix = f"gco:{settings.region}:redbeat"
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


def create_app(settings: Settings) -> Celery:
    celery_app = Celery("gco_tasks")
    celery_app.conf.update(celery_config(settings))
    celery_app.steps["worker"].add(HeartbeatFile)
    return celery_app


settings = load_settings()
app = create_app(settings)
preflight.install(settings)  # worker and beat refuse to start without REGION (and a worker without a cluster)

import gco_tasks.tasks  # noqa: E402,F401  (registers the tasks on ``app``)
