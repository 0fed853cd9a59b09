"""The base classes of the tasks: this process's adapters, retries, and how a result ends a task.

Where it stands in the flow: under ``tasks``. ``FleetTask`` retries a ``TransientError`` with backoff and
jitter (never sooner than a server's ``Retry-After``) and ends a permanent failure FAILED without retry;
``CycleTask`` (fan-out, watchdog, purge, stream poll) never retries: beat sends the next cycle anyway.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from celery import Task

from gco_tasks.core.config import RETRY_DELAY_MAX_SECONDS
from gco_tasks.core.errors import GcoError, ReconcileFailed, TransientError
from gco_tasks.worker.process import process_fleet

if TYPE_CHECKING:
    from gco_tasks.core.results import ReconcileResult
    from gco_tasks.worker.fleet import Fleet

log = logging.getLogger(__name__)


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
        countdown = options.get("countdown")
        asked = _asked_countdown(exc, countdown)
        if asked is not None:
            options["countdown"] = asked
        return super().retry(*args, exc=exc, **options)

    @property
    def max_retries(self) -> int:
        """``TASK_MAX_RETRIES``, read with the rest of the configuration (not at import)."""
        return int(self.app.conf.gco_task_max_retries)

    @property
    def fleet(self) -> Fleet:
        """This process's adapters, built on first use (after the prefork) and reused."""
        return process_fleet()

    def finish(self, result: ReconcileResult) -> dict[str, Any]:
        """The task's JSON result, or ``ReconcileFailed`` (FAILED, no retry) for a permanent failure."""
        outcome = result.as_dict()
        if result.failed:
            raise ReconcileFailed(f"{result.endpoint}: {result.error}", outcome)
        return outcome


def _asked_countdown(exc: BaseException | None, countdown: float | None) -> float | None:
    """The countdown a server's ``Retry-After`` asks for, when longer than ``countdown``: what it
    asked, plus up to a second of jitter, at most the longest backoff; None when it asked for nothing
    longer."""
    asked = getattr(exc, "retry_after", None)
    if asked is None or (countdown is not None and countdown >= asked):
        return None
    return min(float(asked) + random.uniform(0, 1), float(RETRY_DELAY_MAX_SECONDS))


def first_retry_countdown(exc: BaseException) -> float:
    """A first retry's countdown, as ``FleetTask.retry`` gives it: Celery's full-jitter backoff (up to
    ``retry_backoff`` seconds), never sooner than the server's ``Retry-After``."""
    countdown = random.uniform(0, float(FleetTask.retry_backoff))
    asked = _asked_countdown(exc, countdown)
    return countdown if asked is None else asked


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
