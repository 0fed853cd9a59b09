"""The region's scheduler: RedBeat, kept alive through what production does to Redis.

Where it stands in the flow: the clock: it sends ``fan_out``, ``watchdog``, ``purge`` (and ``stream_poll``)
to the region's queue on ``app.beat_schedule``. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from gco_tasks.worker.preflight import check_startup

log = logging.getLogger(__name__)

#: Seconds between two attempts while Redis does not answer.
RETRY_SECONDS = 1.0


class FleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat that survives Redis restarts and failovers, re-creates its schedule, leads without
    blocking and touches a liveness file (see the module's docstring)."""

    lock_key: str | None

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        check_startup("beat")
        self.seeded = False
        super().__init__(app, *args, **kwargs)
        # RedBeat's own lock handling (blocking acquire in beat_init, extend in tick) is switched off by
        # an empty lock_key; the same key is held here, in the tick.
        self.leader_lock_key: str = str(self.lock_key)
        self.lock_key = None
        self.lock: Lock | None = None
        self.liveness = Path(app.conf.gco_beat_heartbeat_file)
        self.redis_away = False

    @property
    def info(self) -> str:
        """Beat's banner lines: RedBeat's (the URL has no credentials) and the leader lock."""
        return (
            f"{super().info}\n       . lock -> `{self.leader_lock_key}` {self.lock_timeout}s, "
            f"taken and extended in the tick"
        )

    # ------------------------------------------------------------------ schedule

    def setup_schedule(self) -> None:
        """RedBeat's, but a Redis that does not answer at start-up is not fatal: the tick seeds later."""
        try:
            super().setup_schedule()
        except RedisError as exc:
            log.warning("beat: cannot write the schedule to Redis yet (%s); will retry", exc)
            return
        self.seeded = True

    def _reseed_if_lost(self) -> None:
        if self.seeded and get_redis(self.app).exists(self.app.redbeat_conf.statics_key):
            return
        if self.seeded:
            log.warning(
                "beat: the schedule is gone from Redis (restarted without persistence?); re-creating it"
            )
        self.setup_schedule()
        if self.seeded:
            log.info("beat: schedule written to Redis")

    # ------------------------------------------------------------------ leader lock

    def _new_lock(self) -> Lock:
        client = get_redis(self.app)
        lock: Lock = client.lock(
            self.leader_lock_key, timeout=self.lock_timeout, blocking=False, thread_local=False
        )
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend *to* the timeout
        return lock

    def _lead(self) -> bool:
        """Extend the leader lock when held, else try to take it (non-blocking); True when held."""
        if self.lock is None:
            self.lock = self._new_lock()
        if self.lock.local.token is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except LockError:
                log.warning("beat: lost the leader lock (expired, or Redis lost it); trying to take it back")
                self.lock.local.token = None
        if self.lock.acquire(blocking=False):
            log.info("beat: Acquired lock")
            return True
        return False

    # ------------------------------------------------------------------ the loop

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One loop of beat: lead (or stay standby), re-seed when needed, send what is due; a Redis that
        does not answer skips the tick. Returns the seconds to sleep."""
        try:
            if not self._lead():
                self._alive()
                return float(self.max_interval)
            self._reseed_if_lost()
            interval = float(super().tick(*args, **kwargs))
        except RedisError as exc:
            if not self.redis_away:
                log.warning(
                    "beat: Redis does not answer (%s: %s); retrying every %.0f s",
                    type(exc).__name__,
                    exc,
                    RETRY_SECONDS,
                )
            self.redis_away = True
            return RETRY_SECONDS
        if self.redis_away:
            log.info("beat: Redis answers again")
            self.redis_away = False
        self._alive()
        return interval

    def _alive(self) -> None:
        try:
            self.liveness.touch()
        except OSError as exc:
            log.warning("beat: cannot touch %s: %s", self.liveness, exc)

    def close(self) -> None:
        """Release the leader lock on a clean stop, so the standby takes over at its next loop."""
        if self.lock is not None and self.lock.local.token is not None:
            try:
                self.lock.release()
                log.info("beat: Released lock")
            except (LockError, RedisError) as exc:
                log.warning("beat: could not release the leader lock: %s", exc)
        self.lock = None
        super().close()
