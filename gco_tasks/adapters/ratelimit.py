"""Fleet-wide pacing of Kubernetes writes: one token bucket per region, shared through its Redis.

Where it stands in the flow: under the cluster gateway (``cluster.ClusterGateway``), which asks its
``WritePacer`` for a slot before every server-side apply and delete, and tells it when the API server
answered 429. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.exceptions import RedisError

from gco_tasks.core.errors import TransientError

log = logging.getLogger(__name__)

#: The longest a write waits for its slot; a slot further away makes the task retry later instead.
MAX_WAIT_SECONDS = 10.0
#: After Redis failed, how long the local bucket is used before Redis is tried again.
REDIS_RETRY_SECONDS = 30.0

#: KEYS[1]: the bucket (hash: tokens, at). ARGV: rate (tokens/s), burst, max wait (s), hold (s).
#: hold = 0: reserve one token; returns {1, wait µs} (reserved: go after wait) or {0, wait µs} (not
#: reserved: the slot is further than the max wait). hold > 0: empty the bucket for ``hold`` seconds
#: (a 429's Retry-After); returns {0, hold µs}. A third element is 1 when the stored state was junk
#: (not numbers, NaN, over the burst, or a time more than a second ahead of Redis's clock: written by
#: someone with Redis access, it would stop every write of the region) and was taken as absent.
TOKEN_BUCKET_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_wait, hold = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
local junk = 0
if (state[1] or state[2]) and (tokens == nil or at == nil or tokens ~= tokens or at ~= at
    or tokens > burst or tokens == -math.huge or at > now + FUTURE_SLACK) then
  tokens, at, junk = nil, nil, 1
end
tokens = tokens or burst
at = at or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local reserved, wait = 0, 0
if hold > 0 then
  tokens = math.min(tokens, -hold * rate)
  wait = hold
else
  wait = math.max(0, (1 - tokens) / rate)
  if wait <= max_wait then
    tokens = tokens - 1
    reserved = 1
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {reserved, math.ceil(wait * 1000000), junk}
""".replace("FUTURE_SLACK", "1")


class WriteThrottled(TransientError):
    """The region's write budget is taken for longer than ``MAX_WAIT_SECONDS`` (a mass change, or the API
    server asked us to back off): retry the task after ``retry_after`` seconds."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(
            f"Kubernetes writes of this region are paced (KUBE_WRITE_RATE); next slot in {wait_seconds:.1f}s"
        )
        self.retry_after: float | None = wait_seconds


@dataclass(frozen=True)
class Reservation:
    """What the bucket answered: go after ``wait`` seconds (``reserved``), or retry later."""

    reserved: bool
    wait: float


@dataclass
class LocalTokenBucket:
    """The same bucket in this process only (the fallback while Redis does not answer). Thread-safe."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    at: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tokens, self.at = float(self.burst), self.clock()

    def reserve(self, max_wait: float, hold: float = 0.0) -> Reservation:
        with self._lock:
            now = self.clock()
            if now > self.at:
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
            if hold > 0:
                self.tokens = min(self.tokens, -hold * self.rate)
                return Reservation(False, hold)
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            if wait > max_wait:
                return Reservation(False, wait)
            self.tokens -= 1
            return Reservation(True, wait)


class RedisWritePacer:
    """Paces this region's Kubernetes writes through the shared bucket in Redis (see the module)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        burst: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key, self.rate, self.burst = key, rate, burst
        self.script = client.register_script(TOKEN_BUCKET_LUA)
        self.local = LocalTokenBucket(rate, burst, clock)
        self.sleep, self.clock = sleep, clock
        self._redis_down_until = 0.0

    def acquire(self) -> None:
        """Wait for this write's slot; ``WriteThrottled`` when it is further than ``MAX_WAIT_SECONDS``."""
        reservation = self._reserve(MAX_WAIT_SECONDS, 0.0)
        if not reservation.reserved:
            raise WriteThrottled(reservation.wait)
        if reservation.wait > 0:
            self.sleep(reservation.wait)

    def hold_off(self, seconds: float) -> None:
        """The API server answered 429 (Retry-After ``seconds``): no write of the region before then."""
        if seconds > 0:
            self._reserve(MAX_WAIT_SECONDS, seconds)

    def _reserve(self, max_wait: float, hold: float) -> Reservation:
        if self.clock() >= self._redis_down_until:
            try:
                reserved, micros, junk = self.script(
                    keys=[self.key], args=[repr(self.rate), self.burst, repr(max_wait), repr(hold)]
                )
                if junk:
                    log.warning("write pacing: the bucket %s held junk (a future time?): reset", self.key)
                return Reservation(bool(reserved), int(micros) / 1_000_000)
            except RedisError as exc:
                log.warning(
                    "write pacing: Redis did not answer (%s: %s); pacing this process alone for %.0fs",
                    type(exc).__name__,
                    exc,
                    REDIS_RETRY_SECONDS,
                )
                self._redis_down_until = self.clock() + REDIS_RETRY_SECONDS
        return self.local.reserve(max_wait, hold)
