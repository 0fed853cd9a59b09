"""The fan-out's decision (``gco_tasks.core.triage``): an endpoint in sync costs no message; each kind of work
is recognised by the reconciler's own rules, and resyncs are spread evenly over the fleet."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.triage import Cycle, resync_cycles, resync_due, triage

REGION = "us-east-1"
NOW = 1_800_000_000.0
SYNCED = datetime.fromtimestamp(NOW - 30, UTC).isoformat()
VERSION = "2026-01-01T00:00:00+00:00"


def cycle(now: float = NOW, **fields: Any) -> Cycle:
    values: dict[str, Any] = {
        "region": REGION,
        "options": RenderOptions(),
        "now": now,
        "interval_seconds": 15,
        "heartbeat_seconds": 300,
        "unhealthy_threshold_seconds": 300,
        **fields,
    }
    return Cycle(**values)


def quiet(name: str) -> float:
    """A moment that is not ``name``'s resync slot (and close to NOW)."""
    moment = NOW
    while resync_due(name, moment, 15, resync_cycles(300, 15)):
        moment += 15
    return moment


def item(name: str = "demo", state: str = "running", ready: int = 1, **fields: Any) -> dict[str, Any]:
    counts = {"replicas_ready": ready, "replicas_desired": 1, "replicas_updated": ready}
    status = {REGION: {"state": state, **counts, "last_sync": SYNCED, "observed_updated_at": VERSION}}
    record = {
        "endpoint_name": name,
        "desired_state": "running",
        "target_regions": [REGION],
        "namespace": "gco-inference",
        "spec": {"image": "nginx:1.27", "gpu_count": 0},
        "region_status": status,
        "updated_at": VERSION,
    }
    for key, value in fields.items():
        if key == "spec":
            record["spec"] = {**record["spec"], **value}
        else:
            record[key] = value
    return record


def live(record: dict[str, Any], ready: int = 1) -> list[dict[str, Any]]:
    """The record's objects as the API server serves them once rolled out."""
    objects = copy.deepcopy(render_endpoint(Endpoint.from_item(record), REGION, RenderOptions()))
    for obj in objects:
        obj["metadata"]["generation"] = 2
        if obj["kind"] == "Deployment":
            counts = {"replicas": ready, "readyReplicas": ready, "updatedReplicas": ready}
            obj["status"] = {"observedGeneration": 2, "availableReplicas": ready, **counts}
    return objects


def reason(record: dict[str, Any] | None, objects: list[dict[str, Any]], **fields: Any) -> str | None:
    name = record["endpoint_name"] if record else "demo"
    return triage(cycle(quiet(name), **fields), name, record, objects).reason


def test_an_endpoint_in_sync_needs_nothing() -> None:
    record = item()
    assert reason(record, live(record)) is None
    verdict = triage(cycle(quiet("demo")), "demo", record, live(record))
    assert [o.key for o in verdict.observed] == [
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("Ingress", "inference-demo"),
    ]


def test_a_record_change_a_missing_object_and_a_hand_edit_are_work() -> None:
    record = item()
    objects = live(record)
    assert reason(item(spec={"image": "nginx:1.28"}), objects) == "change"
    assert reason(record, objects[:2]) == "change"
    edited = copy.deepcopy(objects)
    edited[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "by-hand"
    assert reason(record, edited) == "drift"
    verdict = triage(cycle(quiet("demo")), "demo", record, edited)
    assert verdict.observed[0].drift == ("spec.template.spec.containers[inference].image",)


def test_gcos_objects_are_adopted_and_leftovers_deleted() -> None:
    record = item()
    objects = live(record)
    objects[1]["metadata"]["managedFields"] = [
        {
            "manager": "OpenAPI-Generator",
            "operation": "Update",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:gco.io/type": {}}}},
        }
    ]
    assert reason(record, objects) == "adopt"
    canary = item(spec={"canary": {"image": "nginx:1.28", "weight": 10}})
    assert reason(record, live(record) + live(canary)[2:4]) == "delete"  # the canary's, after a rollback


def test_status_rollouts_and_heartbeats() -> None:
    record = item()
    assert reason(item(state="creating", ready=0), live(record)) == "status"
    assert reason(record, live(record, ready=0)) == "status"  # running -> creating
    rolling = item(state="creating", ready=0, spec={"replicas": 2})
    rolling["region_status"][REGION]["replicas_desired"] = 2
    assert reason(rolling, live(rolling, ready=0)) == "rollout"
    old = item()
    old["region_status"][REGION]["last_sync"] = datetime.fromtimestamp(NOW - 2000, UTC).isoformat()
    assert reason(old, live(old)) == "heartbeat"


def test_records_settled_elsewhere_or_deleted_need_nothing_more() -> None:
    gone = item(desired_state="deleted", state="deleted", ready=0)
    gone["region_status"][REGION] = {"state": "deleted", "last_sync": SYNCED, "observed_updated_at": VERSION}
    assert reason(gone, []) is None
    assert reason(item(desired_state="deleted"), []) == "status"
    assert reason(item(desired_state="deleted", state="deleted"), live(item())) == "delete"
    elsewhere = item(target_regions=["eu-west-1"], region_status={})
    assert reason(elsewhere, []) is None
    assert reason(item(target_regions=["eu-west-1"]), []) == "status-entry"
    assert reason(None, live(item())) == "orphan"
    assert reason(None, []) is None


def test_an_invalid_record_is_sent_until_its_error_is_written() -> None:
    bad = item(spec={"port": 70000})
    assert reason(bad, []) == "status"
    with pytest.raises(InvalidEndpointError) as raised:
        Endpoint.from_item(bad)
    written = {"state": "error", "error": str(raised.value), "last_sync": SYNCED}
    bad["region_status"][REGION] = {**written, "observed_updated_at": "an older version"}
    assert reason(bad, []) == "status"  # about another version of the record
    bad["region_status"][REGION] = {**written, "observed_updated_at": VERSION}
    assert reason(bad, []) is None


def test_the_watchdog_release_is_work() -> None:
    record = item()
    objects = [o for o in live(record) if o["kind"] != "Ingress"]
    assert reason(record, objects, withheld=frozenset({"demo"})) == "watchdog-release"


@pytest.mark.parametrize("names", [[f"endpoint-{i}" for i in range(500)]])
def test_resyncs_are_spread_evenly_and_each_endpoint_comes_round_once_per_period(names: list[str]) -> None:
    cycles = resync_cycles(300, 15)
    assert cycles == 21
    slots = [[name for name in names if resync_due(name, NOW + i * 15, 15, cycles)] for i in range(cycles)]
    assert sorted(name for slot in slots for name in slot) == sorted(names)
    assert max(map(len, slots)) <= 3 * len(names) / cycles
    record = item()
    due = next(NOW + i * 15 for i in range(cycles) if resync_due("demo", NOW + i * 15, 15, cycles))
    assert triage(cycle(due), "demo", record, live(record)).reason == "resync"


def test_a_second_fan_out_in_the_same_interval_sends_no_resync() -> None:
    record = item()
    due = next(NOW + i * 15 for i in range(21) if resync_due("demo", NOW + i * 15, 15, 21))
    assert triage(cycle(due, resyncs=False), "demo", record, live(record)).reason is None


def test_an_error_about_this_record_version_waits_for_its_resync_slot() -> None:
    """A refused apply (a 422, an object that is not ours) or a stuck rollout is not retried every
    cycle: the record changing, the rollout completing or the resync slot sends it again."""
    record = item(state="error", ready=0)
    record["region_status"][REGION]["error"] = "apply Deployment/demo: 422 Unprocessable Entity"
    assert reason(record, []) is None  # nothing exists: the plan would create, but it failed already
    assert reason(record, live(record, ready=0)) is None  # the rollout still looks unfinished
    assert reason(record, live(record)) == "status"  # the rollout completed: running now
    newer = {**record, "updated_at": "2026-02-01T00:00:00+00:00"}
    assert reason(newer, []) == "change"  # the record changed: at once
    due = next(NOW + i * 15 for i in range(21) if resync_due("demo", NOW + i * 15, 15, 21))
    assert triage(cycle(due), "demo", record, []).reason == "resync"
    # The first fan-out under a new configuration (a cap raised, wildcard tolerations allowed) sends it.
    assert reason(record, [], retry_errors=True) == "change"
    assert reason(record, live(record, ready=0), retry_errors=True) == "status"


def test_a_shadowing_path_or_a_bad_name_is_an_error_to_write_not_work() -> None:
    record = item(state="creating", ready=0)
    assert reason(record, [], shadowed={"demo": "older"}) == "status"
    shadowed = triage(cycle(quiet("demo"), shadowed={"demo": "older"}), "demo", record, [])
    assert shadowed.reason == "status" and shadowed.observed == ()
    bad = item("Bad_Name")
    assert triage(cycle(quiet("Bad_Name")), "Bad_Name", bad, []).reason == "status"


def test_an_invalid_record_marked_deleted_has_its_objects_torn_down() -> None:
    bad = item(desired_state="deleted", spec={"port": 70000})
    assert reason(bad, live(item())) == "delete"
    assert reason(bad, []) == "status"  # then reports deleted
