"""A new endpoint's first status report is left to the look its reconcile requeues (``running`` in one
write when the pods were ready by then, where ``creating`` then ``running`` took two), and is written at
once whenever no look is coming or the report says more than ``creating`` over an empty entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gco_tasks.core.records import RegionStatus
from gco_tasks.core.results import ReconcileResult
from gco_tasks.flows.reconciler import reconcile

from .fakes import FakePorts, FakeState
from .test_fake_ports import NAME, REGION, record, region_state, wire

NOW = 1_700_000_000.0
FIRST_LOOK = 2.0


@dataclass
class LookingState(FakeState):
    """Schedules a rollout's look as Redis does: one outstanding per endpoint, until it is sent."""

    outstanding: set[str] = field(default_factory=set)

    def schedule_requeue(
        self, name: str, now: float, first: float, cap: float, interval: float
    ) -> float | None:
        if name in self.outstanding:
            return None
        self.outstanding.add(name)
        return first

    def clear_requeue(self, name: str) -> None:
        self.outstanding.discard(name)


def counted(write: Callable[..., bool], written: list[str]) -> Callable[..., bool]:
    """``write`` (a status write of the store), noting the state of each report it wrote."""

    def counting(name: str, region: str, status: RegionStatus, *args: Any, **kwargs: Any) -> bool:
        wrote = write(name, region, status, *args, **kwargs)
        if wrote:
            written.append(status.state)
        return wrote

    return counting


def looking_ports(**settings: Any) -> tuple[FakePorts, list[str]]:
    """Ports whose rollouts are looked at again, and the states their status writes wrote."""
    ports = FakePorts.create(rollout_requeue_seconds=FIRST_LOOK, **settings)
    ports.state = LookingState()
    written: list[str] = []
    store = ports.store
    store.update_region_status = counted(store.update_region_status, written)  # type: ignore[method-assign]
    store.report_running_and_promote = counted(store.report_running_and_promote, written)  # type: ignore[method-assign]
    return ports, written


def look(ports: FakePorts, first: ReconcileResult, now: float) -> ReconcileResult:
    """The requeued reconcile, as the task sends it: the look's hint through the broker's JSON."""
    assert first.requeue is not None, "the reconcile asked for a look"
    assert isinstance(ports.state, LookingState)
    ports.state.outstanding.discard(NAME)  # sent: the next one may be scheduled
    return reconcile(ports, NAME, wire(first.requeue.hint), now=now)


def unready(ports: FakePorts) -> None:
    deployment = ports.cluster.objects[("Deployment", NAME)]
    deployment["status"] = {**deployment["status"], "readyReplicas": 0, "availableReplicas": 0}


def test_a_new_endpoint_reports_once_its_look_finds_the_pods_ready() -> None:
    ports, written = looking_ports()
    ports.store.put(record())
    created = reconcile(ports, NAME, now=NOW)
    assert created.state == "creating" and created.applied
    assert created.requeue is not None and created.requeue.countdown == FIRST_LOOK
    assert region_state(ports) is None and written == [], "nothing reported before the look"
    looked = look(ports, created, NOW + FIRST_LOOK)
    assert looked.state == "running" and looked.applied == () and looked.requeue is None
    assert region_state(ports) == "running" and written == ["running"], "one write where there were two"


def test_a_look_that_finds_the_pods_not_ready_reports_creating_and_looks_again() -> None:
    ports, written = looking_ports()
    ports.store.put(record())
    created = reconcile(ports, NAME, now=NOW)
    unready(ports)
    looked = look(ports, created, NOW + FIRST_LOOK)
    assert looked.state == "creating" and looked.requeue is not None
    assert region_state(ports) == "creating" and written == ["creating"]


def test_with_no_look_coming_creating_is_written_at_once() -> None:
    ports, written = looking_ports()
    ports.store.put(record())
    assert isinstance(ports.state, LookingState)
    ports.state.outstanding.add(NAME)  # a look already outstanding: this reconcile schedules none
    created = reconcile(ports, NAME, now=NOW)
    assert created.state == "creating" and created.requeue is None
    assert region_state(ports) == "creating" and written == ["creating"]


def test_over_an_entry_already_there_creating_is_written_at_once() -> None:
    ports, written = looking_ports()
    before = {"state": "error", "error": "an earlier spec failed", "last_sync": "2023-11-14T22:00:00Z"}
    ports.store.put({**record(), "region_status": {REGION: before}})
    created = reconcile(ports, NAME, now=NOW)
    assert created.state == "creating" and created.requeue is not None
    assert region_state(ports) == "creating" and written == ["creating"], "the old error is not left"


def test_a_report_with_a_note_is_written_at_once() -> None:
    ports, written = looking_ports()
    ports.store.put(record())
    looking = ports.state
    ports.state = FakeState()  # a first reconcile without looks makes the objects
    reconcile(ports, NAME, now=NOW)
    ports.state = looking
    del ports.cluster.objects[("Deployment", NAME)]
    service = ports.cluster.objects[("Service", NAME)]
    service["metadata"]["deletionTimestamp"] = "2023-11-14T22:00:00Z"  # still terminating
    ports.store.items[NAME]["region_status"] = {}
    written.clear()
    created = reconcile(ports, NAME, now=NOW + 1)
    assert created.state == "creating" and ("Deployment", NAME) in ports.cluster.objects
    entry = ports.store.items[NAME]["region_status"][REGION]
    assert written == ["creating"] and "finish deleting" in entry.get("error", ""), entry
