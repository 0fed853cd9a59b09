"""The Celery app: broker, queue, reliability settings and the beat schedule of one region.

Where it stands in the flow: the frame around everything. ``celery -A gco_tasks worker|beat|flower|call``
finds ``app`` here (through ``gco_tasks.app``); it names its tasks module (``include``) and never imports
it. Cycle tasks: ``gco.<REGION>.cycle``, consumed first. The why: docs/architecture.md ("The worker").
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps, signals

from gco_tasks.core.config import ConfigError, Settings
from gco_tasks.core.conventions import CYCLE_QUEUE_SUFFIX, RegionKeys, cycle_queue_of
from gco_tasks.worker import exporter
from gco_tasks.worker.broker import guard_detached_redis_channels, redis_config
from gco_tasks.worker.liveness import HeartbeatFile
from gco_tasks.worker.preflight import check_startup
from gco_tasks.worker.process import current_settings
from gco_tasks.worker.taskbase import FleetTask

log = logging.getLogger(__name__)


#: The periodic tasks, routed to the region's cycle queue (``Settings.cycle_queue``).
CYCLE_TASKS = ("gco_tasks.fan_out", "gco_tasks.watchdog", "gco_tasks.purge", "gco_tasks.stream_poll")


class CycleQueueFirst(bootsteps.Step):  # type: ignore[misc]
    """A worker that consumes a region's queue consumes its cycle queue too, and first: whatever ``-Q``
    names (a manifest or a test written before the cycle queue existed keeps working), the periodic
    tasks are taken before any reconcile waiting in ``gco.<REGION>``. kombu's ``priority`` queue order
    (``broker_transport_options``) keeps that order on every fetch, where the default would rotate."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        queues = worker.app.amqp.queues
        names = list(queues.consume_from or ())
        cycles = [n for n in names if n.startswith("gco.") and n.endswith(CYCLE_QUEUE_SUFFIX)]
        cycles += [c for c in map(cycle_queue_of, names) if c is not None and c not in cycles]
        order = [*cycles, *(n for n in names if n not in cycles)]
        if order != names:
            queues.select(order)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery and RedBeat setting, derived from ours."""
    queue = settings.queue
    prefix = RegionKeys(settings.region).redbeat_prefix
    broker = redis_config(settings)
    broker["broker_transport_options"] = {
        **broker["broker_transport_options"],
        "queue_order_strategy": "priority",  # the cycle queue first, every fetch (``CycleQueueFirst``)
    }
    return {
        **broker,
        "broker_connection_retry_on_startup": True,
        "result_expires": 3600,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": queue,
        "task_routes": {task: {"queue": settings.cycle_queue} for task in CYCLE_TASKS},
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
    """fan_out every RECONCILE_INTERVAL_SECONDS, watchdog and purge on their own schedules, all to the
    region's cycle queue; each entry expires after its own interval so a missed run is dropped rather
    than piled up (consumed first, a fan-out is not missed behind reconciles)."""

    def entry(task: str, every: int) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": float(every),
            "options": {"queue": settings.cycle_queue, "expires": every},
        }

    schedule = {
        "fan-out": entry("gco_tasks.fan_out", settings.reconcile_interval_seconds),
        "watchdog": entry("gco_tasks.watchdog", settings.watchdog_interval_seconds),
        "purge": entry("gco_tasks.purge", settings.purge_interval_seconds),
    }
    if settings.stream_poll_seconds:  # optional: react to the table's stream between cycles
        schedule["stream-poll"] = entry("gco_tasks.stream_poll", settings.stream_poll_seconds)
    return schedule


def _configuration() -> dict[str, Any]:
    """The app's configuration; a settings error stops the process with one line, not a traceback."""
    try:
        return celery_config(current_settings())
    except ConfigError as exc:
        raise SystemExit(f"gco-tasks: cannot start: {exc}") from None


def _check_worker(**_: Any) -> None:
    check_startup("worker")


def create_app() -> Celery:
    """The app; its configuration comes from ``current_settings()`` when first needed. A worker checks
    ``startup_problem`` when it starts (Celery's ``celeryd_init``, before it connects anywhere); beat
    checks it in its scheduler (``gco_tasks.worker.beat``)."""
    guard_detached_redis_channels()
    celery_app = Celery("gco_tasks", include=["gco_tasks.worker.tasks"], task_cls=FleetTask)
    celery_app.add_defaults(_configuration)
    celery_app.steps["worker"].add(HeartbeatFile)
    celery_app.steps["worker"].add(CycleQueueFirst)
    return celery_app


signals.celeryd_init.connect(_check_worker, weak=False)


app = create_app()
exporter.install(app, current_settings)
