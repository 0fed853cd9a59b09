"""Request counters and fault injection of the sandbox API server (a LOCAL STAND-IN, not Kubernetes):
what ``/_sandbox/stats`` reports and ``/_sandbox/faults`` arms, so tests and benchmarks can count the
fleet's requests and make the next ones fail or stall."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gco_sandbox.objects import bad_request

# --- request counters and faults ----------------------------------------------------------------------


class Stats:
    """Request counts keyed ``"<verb> <resource>"``: ``"list deployments"``, ``"patch deployments/scale"``."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, verb: str, resource: str) -> None:
        with self._lock:
            self._counts[f"{verb} {resource}"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


@dataclass
class Fault:
    """The next ``count`` requests matching (verb, resource, name) stall ``delay_ms`` and/or fail with
    ``status``. ``verb``/``resource`` "*" (or absent) match anything. A 429 or 503 carries
    ``Retry-After: retry_after`` (and ``details.retryAfterSeconds``), as kube-apiserver's do."""

    verb: str = "*"
    resource: str = "*"
    name: str | None = None
    status: int | None = None
    delay_ms: int = 0
    count: int = 1
    retry_after: int = 1

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise bad_request("a fault is a JSON object")
        known = {"verb", "resource", "name", "status", "delay_ms", "count", "retry_after"}
        if set(body) - known:
            raise bad_request(f"unknown fault fields: {sorted(set(body) - known)}")
        fault = cls(**body)
        if fault.status is None and not fault.delay_ms:
            raise bad_request("a fault needs a status, a delay_ms or both")
        return fault

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return (
            self.verb in ("*", verb)
            and self.resource in ("*", resource)
            and (self.name is None or self.name == name)
        )


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(fault).copy() for fault in self._faults]

    def take(self, verb: str, resource: str, name: str | None) -> Fault | None:
        """The first fault matching this request, with its count used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(verb, resource, name):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None
