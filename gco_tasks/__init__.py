"""gco-tasks: GCO's inference-endpoint reconciler as a Celery worker fleet.

``celery -A gco_tasks ...`` finds the Celery app as ``gco_tasks.app``; it is imported lazily so that
the CLI's DynamoDB-only commands do not pay for importing Celery and the Kubernetes client.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "app":
        from gco_tasks.worker.app import app

        return app
    raise AttributeError(f"module 'gco_tasks' has no attribute {name!r}")
