"""Independent requests of one reconcile sent together: the creations of a new endpoint's objects, the
reads by name of a stale hint's. Each waits on a round trip, not on the CPU, so three take one's time.

Where it stands in the flow: under ``reconciler`` and ``observe``; a small thread pool per process, made
on first use (after the worker's fork), each call run in a copy of the caller's context (log fields).
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Requests of one reconcile in flight at once (an endpoint has at most six objects).
MAX_IN_FLIGHT = 6

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, the pool)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one call returned, or the exception it raised (``error``)."""

    value: T | None = None
    error: BaseException | None = None


def run_all(calls: Sequence[Callable[[], T]]) -> list[Outcome[T]]:
    """Run ``calls`` together and wait for every one; their outcomes in the order of ``calls``. A single
    call runs in the caller's thread. No call is abandoned: an exception is kept as its outcome."""
    if len(calls) <= 1:
        return [_outcome(call) for call in calls]
    pool = _executor()
    futures: list[Future[Outcome[T]]] = [
        pool.submit(contextvars.copy_context().run, _outcome, call) for call in calls
    ]
    return [future.result() for future in futures]


def _outcome(call: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=call())
    except Exception as exc:  # handed back to the caller, who decides what it means
        return Outcome(error=exc)


def _executor() -> ThreadPoolExecutor:
    """This process's pool: a forked child makes its own (a parent's threads do not survive a fork)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="gco-requests"))
        return _pool[1]
