"""``fan_out`` and ``reconcile`` driven end to end through in-memory ports (``fakes``, controller-runtime's
fake client as the model): a cycle's messages, their hints through the JSON a broker carries, and what the
reconciles leave in the cluster and the table, without Redis, DynamoDB or an API server. The integration
tests run the same flows against the real servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.results import FanOutResult, ReconcileResult, ResultKind
from gco_tasks.core.triage import resync_cycles, resync_due
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.purge import purge
from gco_tasks.flows.reconciler import reconcile

from .fakes import FakePorts

REGION = "us-east-1"
NAME = "demo"


def record(name: str = NAME, **spec: Any) -> dict[str, Any]:
    return Endpoint.new(name, parse_spec({"image": "nginx:1.27", **spec}), [REGION]).to_item()


def wire(hint: Hint | None) -> Hint | None:
    """The hint as a worker gets it: through the broker's JSON, parsed once by the task."""
    return parse_hint(json.loads(json.dumps(hint.as_message()))) if hint is not None else None


def quiet_moments(ports: FakePorts, start: float = 1_700_000_000.0) -> Iterator[float]:
    """Successive cycles (one interval apart) that are not ``NAME``'s resync slot."""
    settings = ports.settings
    interval = settings.reconcile_interval_seconds
    cycles = resync_cycles(settings.status_heartbeat_seconds, interval)
    moment = start - start % interval
    while True:
        moment += interval
        if not resync_due(NAME, moment, interval, cycles):
            yield moment


def cycle(ports: FakePorts, now: float) -> tuple[FanOutResult, list[ReconcileResult]]:
    """One fan-out, then each message it sent reconciled (as a worker would, at the same moment)."""
    sent: list[tuple[str, Hint | None]] = []
    fanned = fan_out(ports, lambda name, hint: sent.append((name, wire(hint))), now=now)
    return fanned, [reconcile(ports, name, hint, now=now) for name, hint in sent]


def kinds(ports: FakePorts) -> set[str]:
    return {kind for kind, _ in ports.cluster.objects}


def region_state(ports: FakePorts, name: str = NAME) -> str | None:
    entry = (ports.store.items.get(name) or {}).get("region_status", {}).get(REGION) or {}
    return entry.get("state")


def converge(ports: FakePorts, moments: Iterator[float], limit: int = 5) -> None:
    for _ in range(limit):
        fanned, _ = cycle(ports, next(moments))
        if fanned.sent == 0:
            return
    raise AssertionError(f"not converged in {limit} cycles")


def test_a_new_record_is_created_reported_and_promoted_then_a_steady_cycle_costs_one_list() -> None:
    ports = FakePorts.create()
    ports.store.put(record())
    moments = quiet_moments(ports)
    fanned, (first,) = cycle(ports, next(moments))
    assert (fanned.sent, fanned.reasons) == (1, {"change": 1})
    assert first.kind is ResultKind.APPLIED and first.label is ResultKind.APPLIED
    assert {"Deployment/demo", "Service/demo", "Ingress/inference-demo"} <= set(first.applied)
    assert {"Deployment", "Service", "Ingress"} <= kinds(ports)
    converge(ports, moments)
    assert region_state(ports) == "running"
    assert ports.store.items[NAME]["desired_state"] == "running", "every target region runs: promoted"
    ports.cluster.calls.clear()
    steady, results = cycle(ports, next(moments))
    assert (steady.sent, steady.in_sync, results) == (0, 1, [])
    assert ports.cluster.calls == {"list": 1}, "in sync: one LIST, no GET, no write"


def test_a_hand_edit_is_reverted_by_the_next_cycle() -> None:
    ports = FakePorts.create()
    ports.store.put(record())
    moments = quiet_moments(ports)
    converge(ports, moments)
    live = ports.cluster.objects[("Deployment", NAME)]
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/edited:1"
    fanned, (result,) = cycle(ports, next(moments))
    assert fanned.reasons == {"drift": 1}
    assert result.applied == ("Deployment/demo",)
    container = ports.cluster.objects[("Deployment", NAME)]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.27"


def test_an_object_of_our_name_that_is_not_ours_is_refused_and_nothing_is_applied() -> None:
    ports = FakePorts.create()
    ports.store.put(record())
    ports.cluster.objects[("Service", NAME)] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": "gco-inference", "labels": {"team": "other"}},
        "spec": {"ports": [{"port": 80}]},
    }
    _, (result,) = cycle(ports, next(quiet_moments(ports)))
    assert result.kind is ResultKind.ERROR and result.applied == () and result.deleted == ()
    assert kinds(ports) == {"Service"}, "nothing of the endpoint applied"
    assert ports.cluster.objects[("Service", NAME)]["metadata"]["labels"] == {"team": "other"}
    assert region_state(ports) == "error" and "already exists" in str(result.error)


def test_a_deleted_record_loses_its_objects_then_is_purged() -> None:
    ports = FakePorts.create()
    ports.store.put(record())
    moments = quiet_moments(ports)
    converge(ports, moments)
    ports.store.items[NAME]["desired_state"] = "deleted"
    ports.store.items[NAME]["updated_at"] = "2030-01-01T00:00:00+00:00"
    _, (result,) = cycle(ports, next(moments))
    assert result.kind is ResultKind.DELETED and "Deployment/demo" in result.deleted
    converge(ports, moments)
    assert kinds(ports) == set() and region_state(ports) == "deleted"
    assert purge(ports).purged == [NAME] and NAME not in ports.store.items


def test_objects_without_a_record_are_removed_and_a_held_lock_skips() -> None:
    ports = FakePorts.create()
    ports.store.put(record())
    moments = quiet_moments(ports)
    converge(ports, moments)
    del ports.store.items[NAME]
    with ports.state.endpoint_lock(NAME, ttl_seconds=30):
        locked = reconcile(ports, NAME)
    assert locked.kind is ResultKind.SKIPPED_LOCKED and kinds(ports) != set()
    fanned, (result,) = cycle(ports, next(moments))
    assert fanned.orphans == [NAME] and fanned.reasons == {"orphan": 1}
    assert result.kind is ResultKind.ORPHAN_REMOVED and result.label is ResultKind.DELETED
    assert kinds(ports) == set()
