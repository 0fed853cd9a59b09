"""Work that waits on round trips, not on the CPU, done together: one reconcile's independent requests
(the creations of a new endpoint's objects, a stale hint's reads by name), and a batch's reconciles.

Where it stands in the flow: under ``reconciler`` and ``observe``; one thread pool per kind and process,
made after the worker's fork; each call runs in a copy of the caller's context (log fields).
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
#: Reconciles of one batch in flight at once. A pool of their own: a reconcile waiting on its requests
#: never holds a thread they need.
RECONCILES_IN_FLIGHT = 4

REQUESTS = "gco-requests"
RECONCILES = "gco-reconciles"
_SIZES = {REQUESTS: MAX_IN_FLIGHT, RECONCILES: RECONCILES_IN_FLIGHT}

_lock = threading.Lock()
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}  # name -> (pid that made it, the pool)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one call returned, or the exception it raised (``error``)."""

    value: T | None = None
    error: BaseException | None = None


def run_all(calls: Sequence[Callable[[], T]], pool_name: str = REQUESTS) -> list[Outcome[T]]:
    """Run ``calls`` together (as many at once as the pool ``pool_name`` has threads) and wait for every
    one; their outcomes in the order of ``calls``. A single call runs in the caller's thread. No call is
    abandoned: an exception is kept as its outcome."""
    if len(calls) <= 1:
        return [_outcome(call) for call in calls]
    pool = _executor(pool_name)
    futures: list[Future[Outcome[T]]] = [
        pool.submit(contextvars.copy_context().run, _outcome, call) for call in calls
    ]
    return [future.result() for future in futures]


def _outcome(call: Callable[[], T]) -> Outcome[T]:
    try:
        return Outcome(value=call())
    except Exception as exc:  # handed back to the caller, who decides what it means
        return Outcome(error=exc)


def _executor(name: str) -> ThreadPoolExecutor:
    """This process's pool ``name``: a forked child makes its own (a parent's threads do not survive a
    fork)."""
    with _lock:
        made = _pools.get(name)
        if made is None or made[0] != os.getpid():
            made = _pools[name] = (os.getpid(), ThreadPoolExecutor(_SIZES[name], thread_name_prefix=name))
        return made[1]
