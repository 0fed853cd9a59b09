"""Helpers for the fleet's integration tests: a ``Fleet`` wired to the real parts (a private
``redis-server``, moto's DynamoDB over HTTP, and through the official client either API server: the
stand-in or the real control plane).

``run_cycle`` does what beat and a worker pool do, synchronously: one ``fan_out`` whose messages are
each handed to ``reconcile_endpoint``, in order, through the same JSON round trip Celery applies.
``converge`` repeats cycles until a condition holds, within a deadline: on the real server pods are
scheduled and become Ready (kwok's ~1 s) through the Deployment and ReplicaSet controllers, so it takes
a few seconds more than on the stand-in.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings
from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.support import waits

REGION = "us-east-1"


def make_fleet(redis_url: str, kube_client: Any, region: str = REGION, **settings: Any) -> Fleet:
    values: dict[str, Any] = {"region": region, "redis_url": redis_url, "reconcile_interval_seconds": 15}
    values.update(settings)
    return Fleet.from_settings(load_settings({}, **values), api_client=kube_client)


def run_cycle(fleet: Fleet, now: float | None = None) -> list[dict[str, Any]]:
    """One fan-out, then every message it sent, reconciled in turn; returns the task results. ``now``
    (default: the clock) is the moment of both, e.g. to choose a cycle no resync slot falls in."""
    messages: list[tuple[str, Hint | None]] = []
    fan_out(fleet, lambda name, hint: messages.append((name, wire(hint))), now)
    return [reconcile(fleet, name, hint, now).as_dict() for name, hint in messages]


def wire(hint: Hint | None) -> Hint | None:
    """A hint as the worker gets it: through Celery's JSON, then parsed by the task."""
    return parse_hint(json.loads(json.dumps(hint.as_message()))) if hint is not None else None


class RequestLog:
    """The Kubernetes requests the fleet's client sends, as ``"METHOD /path"`` counts (client side, so the
    same on both servers)."""

    def __init__(self, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        rest = fleet.cluster.api_client.rest_client
        send = rest.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self.calls[f"{method} {urlparse(url).path}"] += 1
            return send(method, url, *args, **kwargs)

        monkeypatch.setattr(rest, "request", counted)

    def writes(self) -> dict[str, int]:
        return {call: n for call, n in self.calls.items() if not call.startswith("GET ")}


def converge(
    fleet: Fleet, done: Callable[[], bool], timeout: float = 60.0, pause: float = 0.2
) -> list[dict[str, Any]]:
    """Run cycles until ``done()`` (Deployments become ready after the stand-in's delay, or once the real
    server's pods are scheduled and Ready); fails after ``timeout`` seconds with the last cycle."""
    deadline = time.monotonic() + timeout
    results: list[dict[str, Any]] = []
    while True:
        results = run_cycle(fleet)
        if done():
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"did not converge in {timeout}s; last cycle: {results}")
        time.sleep(pause)


class DynamoWrites:
    """Counts the DynamoDB write calls a store's boto3 client makes (botocore's event hooks)."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem")

    def __init__(self, store: EndpointStore) -> None:
        self.calls: list[str] = []
        for op in self.WRITES:
            store.client.meta.events.register(f"before-call.dynamodb.{op}", self._count(op))

    def _count(self, op: str) -> Callable[..., None]:
        def hook(**_: Any) -> None:
            self.calls.append(op)

        return hook


def reported_state(fleet: Fleet, name: str = "demo") -> str | None:
    """The state the fleet's region last reported for ``name`` (None before its first report)."""
    entry = ((fleet.store.get_item(name) or {}).get("region_status") or {}).get(fleet.settings.region)
    return entry.get("state") if isinstance(entry, dict) else None


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0, pause: float = 0.1) -> None:
    """Wait until ``condition()`` within ``timeout`` seconds (objects deleted in the foreground stay, being
    deleted, until the garbage collector has removed their ReplicaSets and pods)."""
    waits.wait_for(what, condition, timeout, pause)
