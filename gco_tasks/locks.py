"""Redis state of the fleet: locks, the queue's dedup marks and the watchdog's clocks.

Where it stands in the flow: around the tasks. ``fan_out`` takes the region's fan-out lock and marks each
endpoint it enqueues as pending (so a slow or stopped worker pool does not pile up work);
``reconcile_endpoint`` clears the mark and takes the endpoint's lock (step 1); ``watchdog`` keeps its
unready-since clocks and the set of endpoints whose Ingress it withholds here, shared by every worker
and surviving restarts.

Locks are an optimisation, not the guarantee: they are redis-py ``Lock`` objects (token + TTL) and may
expire mid-task; idempotent writes keep the cluster right when they do. Every key is named in
``gco_tasks.conventions.RegionKeys`` (under ``gco:<region>:``, so regions sharing one Redis never
collide). Redis's exceptions do not leave this module: a lost connection or a timeout is a
``TransientError`` (retried), any other Redis error an ``InfrastructureError``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock

from gco_tasks.conventions import RegionKeys
from gco_tasks.errors import InfrastructureError, TransientError

log = logging.getLogger(__name__)


class RegionStateUnavailableError(TransientError):
    """Redis did not answer (connection refused or lost, timeout): retry with backoff."""


class RegionStateError(InfrastructureError):
    """Redis answered with an error (authentication, a read-only replica, out of memory): the region's
    Redis needs fixing; retrying at once will not help."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Redis's exceptions stop here, as ``gco_tasks.errors``."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise RegionStateUnavailableError(f"redis {what}: {type(exc).__name__}: {exc}") from exc
    except RedisError as exc:
        raise RegionStateError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


class RegionState:
    """Locks, pending marks and watchdog clocks of one region, over one Redis client."""

    def __init__(self, client: redis.Redis, region: str) -> None:
        self.client = client
        self.keys = RegionKeys(region)

    @contextlib.contextmanager
    def _lock(self, key: str, ttl_seconds: float) -> Iterator[bool]:
        lock = self.client.lock(key, timeout=ttl_seconds, blocking=False)
        with _translated(f"acquire {key}"):
            acquired = bool(lock.acquire())
        try:
            yield acquired
        finally:
            if acquired:
                self._release(lock, key)

    @staticmethod
    def _release(lock: Lock, key: str) -> None:
        with _translated(f"release {key}"):
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
        with _translated("mark pending"):
            marks = pipe.execute()
        return {name: bool(marked) for name, marked in zip(names, marks, strict=True)}

    def claim_cycle(self, cycle: int, ttl_seconds: int) -> bool:
        """True for the first fan-out of cycle number ``cycle`` (``now`` in intervals), False for any
        other run in the same interval (an ad hoc fan-out, a test, a benchmark): resync slots are
        sent once per cycle, however often the fan-out runs."""
        with _translated("claim cycle"):
            return bool(self.client.set(self.keys.cycle(cycle), "1", nx=True, ex=max(1, ttl_seconds)))

    def clear_pending(self, name: str) -> None:
        with _translated("clear pending"):
            self.client.delete(self.keys.pending(name))

    def unready_clocks(self) -> dict[str, float]:
        with _translated("read watchdog clocks"):
            raw = self.client.hgetall(self.keys.unready_since)
        return {_text(name): float(since) for name, since in raw.items()}

    def withheld(self) -> set[str]:
        with _translated("read withheld"):
            members = self.client.smembers(self.keys.ingress_withheld)
        return {_text(name) for name in members}

    def is_withheld(self, name: str) -> bool:
        with _translated("read withheld"):
            return bool(self.client.sismember(self.keys.ingress_withheld, name))

    def start_clocks(self, names: Iterable[str], now: float) -> None:
        names = list(names)
        if names:
            pipe = self.client.pipeline()
            for name in names:
                pipe.hsetnx(self.keys.unready_since, name, repr(now))
            with _translated("start watchdog clocks"):
                pipe.execute()

    def withhold(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            with _translated("withhold"):
                self.client.sadd(self.keys.ingress_withheld, *names)

    def release(self, names: Iterable[str]) -> None:
        """Forget the clocks and withholding of endpoints that are healthy (or stopped, or gone)."""
        names = list(names)
        if names:
            pipe = self.client.pipeline()
            pipe.hdel(self.keys.unready_since, *names)
            pipe.srem(self.keys.ingress_withheld, *names)
            with _translated("release"):
                pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
