"""The worker's liveness: a Celery bootstep that touches ``WORKER_HEARTBEAT_FILE`` after Redis answered.

Where it stands in the flow: beside the worker's consumer (``app.create_app`` adds it); the pod's
liveness probe in ``k8s/`` reads the file's age. Beat's own heartbeat is in ``beat``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from celery import bootsteps

from gco_tasks.core.redis_target import RedisTarget
from gco_tasks.worker.process import current_settings

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

#: Bound of the liveness PING (connect, then reply), seconds: it runs on the worker's event loop.
PING_TIMEOUT_SECONDS = 2.0


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
