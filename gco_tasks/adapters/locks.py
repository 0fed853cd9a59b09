"""Redis state of a region: ``RegionState`` is its locks (leases renewed while held), pending marks, cycle
claims, the watchdog's memory and the paths' first sightings, over one client that follows the broker.

Where it stands in the flow: around the tasks (fan-out marks, reconcile locks, watchdog clocks). Junk
written there never stops a cycle: it reads as absent, and is logged. More in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock
from redis.sentinel import MasterNotFoundError, Sentinel

from gco_tasks.adapters import metrics
from gco_tasks.adapters.metric_labels import LockName
from gco_tasks.core.config import Settings
from gco_tasks.core.conventions import RegionKeys
from gco_tasks.core.errors import InfrastructureError, TransientError
from gco_tasks.core.paths import first_seen_changes
from gco_tasks.core.redis_target import RedisTarget

log = logging.getLogger(__name__)

#: Bounds of one Redis call of ours: connect, then each reply (seconds).
SOCKET_CONNECT_TIMEOUT = 3.0
SOCKET_TIMEOUT = 5.0


def redis_client(
    target: RedisTarget,
    *,
    socket_timeout: float = SOCKET_TIMEOUT,
    socket_connect_timeout: float = SOCKET_CONNECT_TIMEOUT,
    decode_responses: bool = False,
) -> redis.Redis:
    """A client of the region's Redis: the server itself, over TLS when the URL is ``rediss://`` (the
    certificate verified as the URL says), or whichever node the sentinels name as the primary
    (``Sentinel.master_for``: every new connection asks them again, so a failover is followed)."""
    options: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "health_check_interval": 30,
        "decode_responses": decode_responses,
    }
    if target.is_sentinel:
        sentinel = Sentinel(list(target.nodes), **options)  # type: ignore[no-untyped-call]
        primary: redis.Redis = sentinel.master_for(str(target.master_name))  # type: ignore[no-untyped-call]
        return primary
    tls = target.ssl_options()
    if tls:
        options.update(ssl=True, **tls)
    host, port = target.nodes[0]
    return redis.Redis(host=host, port=port, **options)


class RegionStateUnavailableError(TransientError):
    """Redis did not answer (connection refused or lost, timeout): retry with backoff."""


class RegionStateError(InfrastructureError):
    """Redis answered with an error (authentication, a read-only replica, out of memory): the region's
    Redis needs fixing; retrying at once will not help."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Redis's exceptions stop here, as ``gco_tasks.core.errors``."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, MasterNotFoundError) as exc:
        raise RegionStateUnavailableError(f"redis {what}: {type(exc).__name__}: {exc}") from exc
    except RedisError as exc:
        raise RegionStateError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


class _Renewal:
    """Renews a held lock's lease every third of it, from a daemon thread, until stopped or until the
    holder's own limit (``hold_seconds``) has passed; a lock found lost (expired, or gone with a Redis
    restart) is logged and left alone: the work goes on, it is idempotent."""

    def __init__(self, lock: Lock, key: str, lease: float, hold_seconds: float) -> None:
        self.lock, self.key, self.lease = lock, key, lease
        self.until = time.monotonic() + hold_seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease {key}", daemon=True)

    def __enter__(self) -> _Renewal:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(self.lease / 3):
            if time.monotonic() >= self.until:
                log.warning("lock %s held past its task's time limit: no longer renewed", self.key)
                return
            try:
                self.lock.reacquire()
            except LockNotOwnedError:
                log.warning("lock %s lost while held (expired, or Redis restarted); not renewed", self.key)
                return
            except RedisError as exc:  # Redis away for a moment: try again at the next renewal
                log.warning("cannot renew lock %s: %s", self.key, exc)


class _RegionRedis:
    """One region's keys (``RegionKeys``) over one Redis client: what each part below shares."""

    client: redis.Redis
    region: str
    keys: RegionKeys

    def _bound(self, key: str, seconds: float) -> None:
        """A lock or mark the fleet did not write (no TTL: someone with Redis access) would hold its
        endpoint forever: give it ``seconds`` to live, as the fleet's own would have had."""
        with _translated(f"check TTL of {key}"):
            if self.client.ttl(key) == -1:
                log.warning(
                    "redis key %s had no TTL (not written by the fleet): expires in %ds", key, seconds
                )
                self.client.expire(key, max(1, math.ceil(seconds)))


class RegionLocks(_RegionRedis):
    """The endpoint and fan-out locks: leases renewed while held, counted in ``gco_lock_*``."""

    lease_seconds: float

    @contextlib.contextmanager
    def _lock(self, key: str, ttl_seconds: float, kind: LockName) -> Iterator[bool]:
        """Non-blocking; held for a lease renewed while the body runs, ``ttl_seconds`` at most."""
        lease = min(self.lease_seconds, ttl_seconds)
        # Not thread-local: the renewal thread must see the token.
        lock = self.client.lock(key, timeout=lease, blocking=False, thread_local=False)
        with _translated(f"acquire {key}"):
            acquired = bool(lock.acquire())
        if not acquired:
            self._bound(key, lease)
            metrics.record_lock_contention(self.region, kind)
            yield False
            return
        started = time.monotonic()
        try:
            with _Renewal(lock, key, lease, ttl_seconds):
                yield True
        finally:
            expired = self._release(lock, key)
            metrics.record_lock_released(self.region, kind, time.monotonic() - started, expired)

    @staticmethod
    def _release(lock: Lock, key: str) -> bool:
        """Release ``lock``; True when it had already expired (held past its TTL)."""
        with _translated(f"release {key}"):
            try:
                lock.release()
            except LockError:
                log.warning("lock %s expired before release (the work was idempotent anyway)", key)
                return True
        return False

    def endpoint_lock(self, name: str, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        """Non-blocking: yields False when another worker holds the endpoint. Held in leases while the
        body runs, ``ttl_seconds`` (the task's time limit and a margin) at most."""
        return self._lock(self.keys.endpoint_lock(name), ttl_seconds, LockName.ENDPOINT)

    def fan_out_lock(self, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        """Non-blocking: yields False while another fan-out of this region runs."""
        return self._lock(self.keys.fan_out_lock, ttl_seconds, LockName.FAN_OUT)


class PendingMarks(_RegionRedis):
    """Which endpoints have a reconcile message waiting in the queue (so none is sent twice)."""

    def mark_pending_many(self, names: Iterable[str], ttl_seconds: int) -> dict[str, bool]:
        """Mark endpoints as having a message waiting, in one round trip: name -> True when it had none
        (send one), False when one is still waiting (skip). The TTL matches the message's expiry, so a
        message dropped unprocessed is sent again by a later fan-out."""
        names = list(names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.set(self.keys.pending(name), "1", nx=True, ex=max(1, ttl_seconds))
            pipe.ttl(self.keys.pending(name))
        with _translated("mark pending"):
            replies = pipe.execute()
        marks, ttls = replies[0::2], replies[1::2]
        for name, marked, ttl in zip(names, marks, ttls, strict=True):
            if not marked and ttl == -1:  # a mark without TTL would skip this endpoint forever
                self._bound(self.keys.pending(name), ttl_seconds)
        return {name: bool(marked) for name, marked in zip(names, marks, strict=True)}

    def clear_pending(self, name: str) -> None:
        with _translated("clear pending"):
            self.client.delete(self.keys.pending(name))


class CycleClaims(_RegionRedis):
    """Which fan-out is the first of its cycle (resync slots are sent once per cycle)."""

    def claim_cycle(self, cycle: int, ttl_seconds: int) -> bool:
        """True for the first fan-out of cycle number ``cycle`` (``now`` in intervals), False for any
        other run in the same interval (an ad hoc fan-out, a test, a benchmark): resync slots are
        sent once per cycle, however often the fan-out runs."""
        with _translated("claim cycle"):
            return bool(self.client.set(self.keys.cycle(cycle), "1", nx=True, ex=max(1, ttl_seconds)))


class WatchdogMemory(_RegionRedis):
    """The watchdog's unready-since clocks and the endpoints whose Ingress it withholds."""

    def unready_clocks(self) -> dict[str, float]:
        """Each endpoint's unready-since time; an entry that is not a name and a finite time (written by
        someone with Redis access) is absent, and logged."""
        with _translated("read watchdog clocks"):
            raw = self.client.hgetall(self.keys.unready_since)
        clocks = {}
        for name, since in raw.items():
            text, when = _text(name), _seconds(since)
            if text is None or when is None:
                log.warning(
                    "watchdog clock %r=%r in %s is unreadable: ignored", name, since, self.keys.unready_since
                )
                continue
            clocks[text] = when
        return clocks

    def withheld(self) -> set[str]:
        """Endpoints whose Ingress the watchdog withholds; a member that is not UTF-8 text is absent, and
        logged."""
        with _translated("read withheld"):
            members = self.client.smembers(self.keys.ingress_withheld)
        names = {_text(member) for member in members}
        if None in names:
            log.warning("unreadable members of %s ignored (not UTF-8 text)", self.keys.ingress_withheld)
        return {name for name in names if name is not None}

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


#: KEYS[1]: an endpoint's rollout backoff (hash: attempt, due, eta). ARGV: now, first delay, cap,
#: horizon (s). The next attempt's delay doubles from ``first`` up to ``cap``; when it is shorter than
#: the horizon and no requeued message is outstanding (``eta`` in the future), one is to be sent:
#: returns {1, delay} (send one, due in ``delay``), else {0, delay} (the fan-out sends it when due). A
#: requeued message is pending like a fan-out's, so a long one would hold back a change to the record.
REQUEUE_LUA = """
local now, first = tonumber(ARGV[1]), tonumber(ARGV[2])
local cap, interval = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'attempt', 'eta')
local attempt = tonumber(state[1])
local eta = tonumber(state[2]) or 0
if attempt == nil then attempt = 0 else attempt = math.min(attempt + 1, 30) end
local delay = math.min(cap, first * math.pow(2, attempt))
local send = 0
if delay < interval and eta <= now then
  send = 1
  eta = now + delay
end
redis.call('HSET', KEYS[1], 'attempt', attempt, 'due', tostring(now + delay), 'eta', tostring(eta))
redis.call('EXPIRE', KEYS[1], math.ceil(delay + 2 * interval + 60))
return {send, tostring(delay)}
"""


class RolloutBackoffs(_RegionRedis):
    """Each endpoint's rollout backoff while a rollout lasts: when its reconcile looks again."""

    def schedule_requeue(
        self, name: str, now: float, first: float, cap: float, interval: float
    ) -> float | None:
        """Note that ``name``'s rollout is still in progress (``REQUEUE_LUA``): the seconds after which
        a requeued reconcile is to be sent (one at a time per endpoint, however many reconciles ran
        meanwhile), or None when none is (one is outstanding, or the next look is ``interval`` (the
        horizon) or more away: the fan-out sends it when it is due)."""
        with _translated("schedule requeue"):
            script = self.client.register_script(REQUEUE_LUA)
            send, delay = script(keys=[self.keys.requeue(name)], args=[repr(now), first, cap, interval])
        return float(delay) if int(send) else None

    def clear_requeue(self, name: str) -> None:
        """The rollout is over: the next one starts its backoff afresh."""
        with _translated("clear requeue"):
            self.client.delete(self.keys.requeue(name))

    def requeue_marks(self, names: Iterable[str]) -> dict[str, tuple[float, float]]:
        """name -> (due, eta) of each endpoint whose rollout backoff is running: when it is next to be
        looked at, and when its requeued message is (0: none outstanding). One round trip."""
        names = list(names)
        if not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self.keys.requeue(name), "due", "eta")
        with _translated("read requeues"):
            answers = pipe.execute()
        marks: dict[str, tuple[float, float]] = {}
        for name, (due, eta) in zip(names, answers, strict=True):
            try:
                if due is not None:
                    marks[name] = (float(due), float(eta or 0))
            except ValueError:  # unreadable: as if absent (the fan-out sends it)
                log.warning("ignoring an unreadable rollout backoff of %s", name)
        return marks


class PathSeniority(_RegionRedis):
    """When the fleet first saw each record ask for its ingress path (``paths.FirstSeen``): the
    seniority on the shared load balancer, kept by the fan-out on its own clock. An unreadable entry is
    absent (the record is then first seen again)."""

    def paths_first_seen(self, names: Iterable[str] | None = None) -> dict[str, tuple[str, float]]:
        """The entries of ``names`` (all of them with None)."""
        key = self.keys.path_first_seen
        raw: dict[bytes | str, bytes | str | None]
        with _translated("read path seniority"):
            if names is None:
                raw = dict(self.client.hgetall(key))
            else:
                wanted: list[bytes | str] = list(names)
                raw = dict(zip(wanted, self.client.hmget(key, wanted), strict=True)) if wanted else {}
        entries = {}
        for name, value in raw.items():
            text, entry = _text(name), _first_seen(value) if value is not None else None
            if text is not None and entry is not None:
                entries[text] = entry
        return entries

    def note_paths(
        self, paths: Mapping[str, str], now: float, serving: Mapping[str, float] | None = None
    ) -> dict[str, tuple[str, float]]:
        """Record what the fan-out saw (name -> path) and return every entry: a record asking for a
        path it was not known to ask for is first seen ``now`` (or when its live Ingress serving that
        path was created, ``serving``); names without a path are forgotten."""
        known = self.paths_first_seen()
        new, gone = first_seen_changes(paths, known, now, serving)
        if new or gone:
            pipe = self.client.pipeline()
            if new:
                pipe.hset(
                    self.keys.path_first_seen,
                    mapping={name: f"{at!r} {path}" for name, (path, at) in new.items()},
                )
            if gone:
                pipe.hdel(self.keys.path_first_seen, *gone)
            with _translated("write path seniority"):
                pipe.execute()
        return {**{name: known[name] for name in known if name not in gone}, **new}


class RegionState(RegionLocks, PendingMarks, CycleClaims, WatchdogMemory, PathSeniority, RolloutBackoffs):
    """The region's Redis state, over one client: locks, pending marks, cycle claims, watchdog memory."""

    def __init__(self, client: redis.Redis, region: str, lease_seconds: float = 10.0) -> None:
        self.client = client
        self.region = region
        self.keys = RegionKeys(region)
        self.lease_seconds = lease_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> RegionState:
        """Over a client of ``REDIS_URL`` (``redis_client``), with ``LOCK_LEASE_SECONDS`` leases."""
        return cls(redis_client(settings.redis_target), settings.region, settings.lock_lease_seconds)


def _text(value: bytes | str) -> str | None:
    """A Redis value as text; None when it is not UTF-8 (junk written by someone else)."""
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def _first_seen(value: bytes | str) -> tuple[str, float] | None:
    """``"<seconds> <path>"`` as ``(path, seconds)``; None when unreadable."""
    text = _text(value)
    seconds, _, path = (text or "").partition(" ")
    when = _seconds(seconds)
    return (path, when) if when is not None and path else None


def _seconds(value: bytes | str) -> float | None:
    """A stored time (``repr`` of a float) as seconds; None when it is not a finite number."""
    text = _text(value)
    try:
        seconds = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None
