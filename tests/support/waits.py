"""Waiting on a condition with a deadline, never a bare sleep: ``wait_for`` returns the condition's first
truthy value, ``timed_wait`` the seconds it took. Both fail with an ``AssertionError`` naming what was
awaited (and ``log()``, e.g. the processes' logs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float = 30.0,
    pause: float = 0.1,
    log: Callable[[], str] = str,
) -> T:
    """``check()``'s first truthy value, polled every ``pause`` s; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = log()
            message = f"timed out after {timeout:.0f} s waiting for {what}"
            raise AssertionError(f"{message}\n{detail}" if detail else message)
        time.sleep(pause)


def timed_wait(
    check: Callable[[], Any], timeout: float, what: str, pause: float = 0.1, log: Callable[[], str] = str
) -> float:
    """Wait as ``wait_for`` does; the seconds it took (a recovery time)."""
    start = time.monotonic()
    wait_for(what, check, timeout, pause, log)
    return time.monotonic() - start
