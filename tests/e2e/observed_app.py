"""A test-only Celery app with the fleet's observability installed (``exporter.install``, as the
fleet's own app does), for real ``celery worker`` / ``celery beat`` processes in
``test_observability_processes.py``: its tasks record through the public record functions from inside
the pool's children, and can hang or be killed, which the fleet's tasks cannot be made to do on demand.
The fleet's own processes are tested in ``test_wired_fleet.py``.

``celery -A tests.e2e.observed_app worker|beat``, with REGION, REDIS_URL, METRICS_PORT, LOG_FORMAT and
PROMETHEUS_MULTIPROC_DIR (workers) in the environment.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from celery import Celery

from gco_tasks.adapters import metrics
from gco_tasks.core.config import load_settings
from gco_tasks.worker import exporter

settings = load_settings()
app = Celery("observed", broker=settings.redis_url, backend=settings.redis_url)
app.conf.update(
    task_default_queue=settings.queue,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
    beat_schedule={
        "tick": {
            "task": "gco_tasks.test_record",
            "schedule": 0.5,
            "args": ["noop"],
            "options": {"queue": settings.queue, "expires": 60},
        }
    },
)
installed = exporter.install(app, settings)
log = logging.getLogger("gco_tasks.test_app")


@app.task(name="gco_tasks.test_record")  # type: ignore[untyped-decorator]
def record(result: str, sleep: float = 0.0) -> int:
    """One reconcile of ``result`` recorded in this pool child; returns the child's pid."""
    metrics.record_reconcile(settings.region, result, 0.02, "kube_invalid" if result == "error" else None)
    time.sleep(sleep)
    log.info("recorded", extra={"endpoint": "my-llm", "result": result, "duration_ms": 20.0})
    return os.getpid()


@app.task(name="gco_tasks.test_hang")  # type: ignore[untyped-decorator]
def hang(pid_file: str, seconds: float) -> None:
    """Record a deletion, write this child's pid, then block (the test kills this child)."""
    metrics.record_reconcile(settings.region, "deleted", 0.01)
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
