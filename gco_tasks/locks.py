"""Redis state of the fleet: locks, the queue's dedup marks and the watchdog's clocks.

Where it stands in the flow: around the tasks. ``fan_out`` takes the region's fan-out lock and marks each
endpoint it enqueues as pending (so a slow or stopped worker pool does not pile up work);
``reconcile_endpoint`` clears the mark and takes the endpoint's lock (step 1); ``watchdog`` keeps its
unready-since clocks and the set of endpoints whose Ingress it withholds here, shared by every worker
and surviving restarts.

Locks are an optimisation, not the guarantee: they are redis-py ``Lock`` objects (token + TTL) and may
expire mid-task; idempotent writes keep the cluster right when they do. Every key lives under
``gco:<region>:`` so regions sharing one Redis never collide.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)


class RegionKeys:
    """The names of every Redis key the fleet uses for one region."""

    def __init__(self, region: str) -> None:
        self.prefix = f"gco:{region}:"

    def endpoint_lock(self, name: str) -> str:
        return f"{self.prefix}endpoint:{name}"

    @property
    def fan_out_lock(self) -> str:
        return f"{self.prefix}fan-out"

    def pending(self, name: str) -> str:
        return f"{self.prefix}pending:{name}"

    @property
    def unready_since(self) -> str:
        return f"{self.prefix}watchdog:unready-since"

    @property
    def ingress_withheld(self) -> str:
        return f"{self.prefix}watchdog:ingress-withheld"

    @property
    def redbeat_prefix(self) -> str:
        return f"{self.prefix}redbeat:"


class RegionState:
    """Locks, pending marks and watchdog clocks of one region, over one Redis client."""

    def __init__(self, client: redis.Redis, region: str) -> None:
        self.client = client
        self.keys = RegionKeys(region)

    @contextlib.contextmanager
    def _lock(self, key: str, ttl_seconds: float) -> Iterator[bool]:
        lock = self.client.lock(key, timeout=ttl_seconds, blocking=False)
        acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except LockError:
                    log.warning("lock %s expired before release (the work was idempotent anyway)", key)

    def endpoint_lock(self, name: str, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        """Non-blocking: yields False when another worker holds the endpoint."""
        return self._lock(self.keys.endpoint_lock(name), ttl_seconds)

    def fan_out_lock(self, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        """Non-blocking: yields False while another fan-out of this region runs."""
        return self._lock(self.keys.fan_out_lock, ttl_seconds)

    def mark_pending_many(self, names: Iterable[str], ttl_seconds: int) -> dict[str, bool]:
        """Mark endpoints as having a message waiting, in one round trip: name -> True when it had none
        (send one), False when one is still waiting (skip). The TTL matches the message's expiry, so a
        message dropped unprocessed is sent again by a later fan-out."""
        names = list(names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.set(self.keys.pending(name), "1", nx=True, ex=max(1, ttl_seconds))
        return {name: bool(marked) for name, marked in zip(names, pipe.execute(), strict=True)}

    def clear_pending(self, name: str) -> None:
        self.client.delete(self.keys.pending(name))

    def unready_clocks(self) -> dict[str, float]:
        raw = self.client.hgetall(self.keys.unready_since)
        return {_text(name): float(since) for name, since in raw.items()}

    def withheld(self) -> set[str]:
        return {_text(name) for name in self.client.smembers(self.keys.ingress_withheld)}

    def is_withheld(self, name: str) -> bool:
        return bool(self.client.sismember(self.keys.ingress_withheld, name))

    def start_clocks(self, names: Iterable[str], now: float) -> None:
        names = list(names)
        if names:
            pipe = self.client.pipeline()
            for name in names:
                pipe.hsetnx(self.keys.unready_since, name, repr(now))
            pipe.execute()

    def withhold(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self.client.sadd(self.keys.ingress_withheld, *names)

    def release(self, names: Iterable[str]) -> None:
        """Forget the clocks and withholding of endpoints that are healthy (or stopped, or gone)."""
        names = list(names)
        if names:
            pipe = self.client.pipeline()
            pipe.hdel(self.keys.unready_since, *names)
            pipe.srem(self.keys.ingress_withheld, *names)
            pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
