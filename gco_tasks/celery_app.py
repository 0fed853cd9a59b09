"""The Celery app (placeholder until issue 5 lands)."""

from __future__ import annotations

from celery import Celery

app = Celery("gco_tasks")
