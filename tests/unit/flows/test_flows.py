"""The decisions the flows make, as pure functions: the namespace check, the watchdog's withholding and
releases, when status is written or removed, promotion and purge, and the ``ReconcileResult`` a
reconcile returns. (Which endpoints a fan-out sends, and what a message's hint may be trusted for:
test_triage.py and test_observe.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from gco_tasks.core.conventions import canary_name, endpoint_selector, ingress_name, queue_for_region
from gco_tasks.core.errors import PermanentError
from gco_tasks.core.health import HealthVerdict
from gco_tasks.core.plan import ObservedObject, apply_withholding
from gco_tasks.core.records import Endpoint, InvalidEndpointError, RecordHeader
from gco_tasks.core.rendering import RenderOptions, desired_objects
from gco_tasks.core.results import ReconcileResult, ResultKind, result_kind
from gco_tasks.core.status import StatusAction, StatusReport, promotion_due, status_action
from gco_tasks.flows.fanout import items_by_name
from gco_tasks.flows.purge import purgeable
from gco_tasks.flows.watchdog import releases

REGION = "us-east-1"


def item(name: str = "demo", **fields: Any) -> dict[str, Any]:
    return {
        "endpoint_name": name,
        "desired_state": "running",
        "target_regions": [REGION],
        "namespace": "gco-inference",
        "spec": {"image": "nginx:1.27"},
        "region_status": {},
        **fields,
    }


def deployment(name: str, ready: int = 0, replicas: int | None = 1) -> ObservedObject:
    return ObservedObject(kind="Deployment", name=name, ready_replicas=ready, replicas=replicas)


def test_names_follow_gco() -> None:
    assert (canary_name("a"), ingress_name("a"), queue_for_region("eu-west-1")) == (
        "a-canary",
        "inference-a",
        "gco.eu-west-1",
    )
    assert endpoint_selector("a") == "gco.io/type=inference,app in (a,a-canary)"


# --------------------------------------------------------------------------- fan-out


def test_items_without_a_string_name_are_set_aside() -> None:
    by_name, skipped = items_by_name([item("a"), {"endpoint_name": 7, "spec": {}}, item("b")])
    assert sorted(by_name) == ["a", "b"]
    assert skipped == [["endpoint_name", "spec"]]


# --------------------------------------------------------------------------- reconcile


def test_a_record_in_another_namespace_is_invalid_only_where_it_is_targeted() -> None:
    elsewhere = Endpoint.from_item(item(namespace="team-a"))
    with pytest.raises(InvalidEndpointError, match="INFERENCE_NAMESPACE") as raised:
        desired_objects(elsewhere, REGION, RenderOptions())
    assert isinstance(raised.value, PermanentError)
    assert desired_objects(elsewhere, "eu-west-1", RenderOptions()) == []
    assert [o["kind"] for o in desired_objects(Endpoint.from_item(item()), REGION, RenderOptions())] == [
        "Deployment",
        "Service",
        "Ingress",
    ]


def test_withholding_strips_the_ingress_until_the_primary_is_ready() -> None:
    desired = desired_objects(Endpoint.from_item(item()), REGION, RenderOptions())
    assert apply_withholding("demo", desired, [], withheld=False, threshold_seconds=300).desired == desired
    held = apply_withholding("demo", desired, [deployment("demo")], withheld=True, threshold_seconds=300)
    assert [o["kind"] for o in held.desired] == ["Deployment", "Service"] and not held.release
    assert "300s" in held.notes[0]
    ready = apply_withholding("demo", desired, [deployment("demo", ready=1)], True, 300)
    assert ready.desired == desired and ready.release and ready.notes == ()


def test_result_kinds_and_the_task_result() -> None:
    assert result_kind(["Deployment/a"], ["Service/a-canary"], None) is ResultKind.APPLIED
    assert result_kind([], ["Ingress/inference-a"], None) is ResultKind.DELETED
    assert result_kind([], [], None) is ResultKind.NOOP
    assert result_kind(["Service/a"], [], "422") is ResultKind.ERROR
    result = ReconcileResult("a", ResultKind.ERROR, ("Service/a",), ("Ingress/x",), "error", "apply: 422")
    assert result.failed and not ReconcileResult("a", ResultKind.APPLIED, ("Service/a",)).failed
    assert result.as_dict() == {
        "endpoint": "a",
        "actions": ["apply Service/a", "delete Ingress/x"],
        "state": "error",
        "result": "error",
        "error": "apply: 422",
    }
    locked = ReconcileResult("a", ResultKind.SKIPPED_LOCKED, skipped="locked by another worker")
    assert locked.as_dict()["skipped"] == "locked by another worker" and not locked.failed


# --------------------------------------------------------------------------- status, promotion, purge


def test_status_is_written_removed_or_kept() -> None:
    targeted = RecordHeader.from_item(item(region_status={REGION: {"state": "running"}}))
    dropped = RecordHeader.from_item(
        item(target_regions=["eu-west-1"], region_status={REGION: {"state": "running"}})
    )
    running = StatusReport("running", 1, 1)
    assert status_action(targeted, REGION, running) is StatusAction.WRITE
    assert status_action(dropped, REGION, None) is StatusAction.REMOVE
    assert status_action(dropped, REGION, None, cleaned=False) is StatusAction.KEEP
    assert status_action(RecordHeader.from_item(item()), REGION, None) is StatusAction.KEEP
    assert status_action(dropped, REGION, StatusReport("error", error="x")) is StatusAction.KEEP


def test_promotion_waits_for_every_target_region() -> None:
    two = item(desired_state="deploying", target_regions=[REGION, "eu-west-1"])
    running = StatusReport("running", 1, 1)
    assert not promotion_due(RecordHeader.from_item(two), REGION, running)
    two["region_status"] = {"eu-west-1": {"state": "running"}}
    assert promotion_due(RecordHeader.from_item(two), REGION, running)
    assert not promotion_due(RecordHeader.from_item(two), REGION, StatusReport("updating", 0, 1))


def test_purge_takes_deleted_records_every_target_reports_deleted() -> None:
    done = item(desired_state="deleted", region_status={REGION: {"state": "deleted"}})
    assert purgeable(done) is not None
    assert purgeable({**done, "region_status": {}}) is None
    assert purgeable({**done, "desired_state": "running"}) is None
    assert purgeable({"endpoint_name": None}) is None


def test_the_watchdog_releases_healthy_stopped_and_gone_endpoints() -> None:
    verdict = HealthVerdict(start_clocks=("new",), clear=("healed", "calm"), withhold=("sick",))
    released, recovered = releases(verdict, {"calm": 1.0, "vanished": 2.0}, {"healed", "lost"}, ["healed"])
    assert set(released) == {"calm", "healed", "lost", "vanished"}
    assert recovered == ["healed"]
