"""What a task's telemetry decides, as pure functions: the metric labels of a reconcile, the Events it
records (and their notes), the Deployment uid they are recorded on, the endpoints by state of a fan-out,
and the fields of its log line."""

from __future__ import annotations

from typing import Any

import pytest

from gco_tasks.adapters.events import EventReason
from gco_tasks.adapters.metric_labels import ErrorReason
from gco_tasks.core.hint import parse_hint
from gco_tasks.core.results import ReconcileResult, ResultKind, WatchdogResult
from gco_tasks.core.results import ResultKind as Label
from gco_tasks.worker.telemetry import (
    Witness,
    applied_note,
    deployment_uid,
    endpoint_states,
    log_fields,
    reconcile_events,
    result_labels,
    watchdog_events,
)

REGION = "us-east-1"
DEPLOY, SERVICE, INGRESS = "Deployment/demo", "Service/demo", "Ingress/inference-demo"


def result(kind: ResultKind, **fields: Any) -> ReconcileResult:
    return ReconcileResult("demo", kind, **fields)


@pytest.mark.parametrize(
    ("reconciled", "seen", "labels"),
    [
        (result(ResultKind.APPLIED, applied=(DEPLOY,)), Witness(), (Label.APPLIED, None)),
        (result(ResultKind.NOOP), Witness(), (Label.NOOP, None)),
        (result(ResultKind.DELETED, deleted=(DEPLOY,)), Witness(), (Label.DELETED, None)),
        (result(ResultKind.ORPHAN_REMOVED, deleted=(DEPLOY,)), Witness(), (Label.DELETED, None)),
        (result(ResultKind.SKIPPED_LOCKED, skipped="locked"), Witness(), (Label.SKIPPED_LOCKED, None)),
        (
            result(ResultKind.INVALID, error="spec.port: ..."),
            Witness(),
            (Label.ERROR, ErrorReason.INVALID_SPEC),
        ),
        (
            result(ResultKind.ERROR, applied=(SERVICE,), error="apply Deployment/demo: 422 ..."),
            Witness(refused=[("apply", 422)]),
            (Label.ERROR, ErrorReason.KUBE_INVALID),
        ),
        (
            result(ResultKind.ERROR, error="delete Service/demo: 403 ..."),
            Witness(refused=[("delete", 403), ("apply", 422)]),
            (Label.ERROR, ErrorReason.KUBE_FORBIDDEN),
        ),
        (result(ResultKind.ERROR, error="?"), Witness(), (Label.ERROR, None)),  # recorded as internal
    ],
)
def test_result_labels(reconciled: ReconcileResult, seen: Witness, labels: tuple[Any, Any]) -> None:
    assert result_labels(reconciled, seen) == labels


def test_nothing_done_records_no_event() -> None:
    assert reconcile_events(result(ResultKind.NOOP, state="running"), Witness(), {}) == []
    assert reconcile_events(result(ResultKind.SKIPPED_LOCKED), Witness(), None) == []


def test_applied_says_what_was_created_and_what_was_updated() -> None:
    applied = result(ResultKind.APPLIED, applied=(DEPLOY, SERVICE, INGRESS), state="updating")
    events = reconcile_events(applied, Witness(), {DEPLOY: "uid-1"})
    assert events == [(EventReason.APPLIED, f"created {SERVICE}, {INGRESS}; updated {DEPLOY}")]
    assert applied_note([DEPLOY], None) == f"applied {DEPLOY}", "what existed before is unknown"
    assert applied_note([DEPLOY], {}) == f"created {DEPLOY}"


def test_deleted_and_orphans() -> None:
    deleted = result(ResultKind.DELETED, deleted=(INGRESS, DEPLOY), state="stopped")
    assert reconcile_events(deleted, Witness(), None) == [
        (EventReason.DELETED, f"deleted {INGRESS}, {DEPLOY} (state stopped)")
    ]
    orphan = result(ResultKind.ORPHAN_REMOVED, deleted=(DEPLOY,), state="orphan-removed")
    assert reconcile_events(orphan, Witness(), None) == [(EventReason.ORPHAN_REMOVED, f"deleted {DEPLOY}")]


def test_an_invalid_record_changes_nothing_and_says_so() -> None:
    invalid = result(ResultKind.INVALID, state="error", error="invalid endpoint 'demo': spec.port: ...")
    seen = Witness(status=("error", "invalid endpoint 'demo': spec.port: ..."))
    assert reconcile_events(invalid, seen, None) == [
        (
            EventReason.INVALID_SPEC,
            "invalid endpoint 'demo': spec.port: ...; nothing was changed in the cluster",
        )
    ]


def test_a_refusal_is_apply_failed_unless_only_deletes_were_refused() -> None:
    error = "apply Deployment/demo: 422 Unprocessable Entity: denied"
    refused = result(ResultKind.ERROR, applied=(SERVICE,), state="error", error=error)
    seen = Witness(refused=[("apply", 422)], status=("error", error))
    assert reconcile_events(refused, seen, {SERVICE: None}) == [
        (EventReason.APPLIED, f"updated {SERVICE}"),
        (EventReason.APPLY_FAILED, error),
    ], "the error status is the refusal itself, not a stuck rollout"
    delete_refused = result(ResultKind.ERROR, state="error", error="delete Service/demo: 403 Forbidden")
    events = reconcile_events(delete_refused, Witness(refused=[("delete", 403)]), None)
    assert events == [(EventReason.DELETE_FAILED, "delete Service/demo: 403 Forbidden")]


def test_promoted_restored_and_stuck() -> None:
    restored = result(ResultKind.APPLIED, applied=(INGRESS,), state="running")
    seen = Witness(released={"demo"}, promoted=True, status=("running", None))
    assert [reason for reason, _ in reconcile_events(restored, seen, {})] == [
        EventReason.APPLIED,
        EventReason.INGRESS_RESTORED,
        EventReason.PROMOTED,
    ]
    released_without_ingress = result(ResultKind.NOOP, state="running")
    assert reconcile_events(released_without_ingress, Witness(released={"demo"}), {}) == []
    message = "image nvcr.io/x:bad cannot be pulled on 2 of 2 new pods"
    stuck = result(ResultKind.NOOP, state="error")
    assert reconcile_events(stuck, Witness(status=("error", message)), {}) == [
        (EventReason.ROLLOUT_STUCK, message)
    ]


def test_the_deployment_uid_prefers_what_the_api_answered() -> None:
    digests = {DEPLOY: "from-snapshot"}
    assert deployment_uid("demo", Witness(), None) is None
    assert deployment_uid("demo", Witness(), digests) == "from-snapshot"
    assert deployment_uid("demo", Witness(listed={DEPLOY: "listed"}), digests) == "listed"
    answered = Witness(listed={DEPLOY: "listed"}, answered={DEPLOY: "applied"})
    assert deployment_uid("demo", answered, digests) == "applied"
    assert deployment_uid("other", answered, digests) is None


def test_the_parsed_hint_names_its_objects_uids() -> None:
    assert parse_hint(None) is None and parse_hint({"taken_at": 1.0, "observed": "junk"}) is None
    hint = parse_hint({"taken_at": 1.0, "observed": []})
    assert hint is not None and hint.object_uids() == {}, "a hint of an endpoint with no object"
    observed = [{"kind": "Deployment", "name": "demo", "uid": "u1"}, {"kind": "Service", "name": "demo"}]
    hint = parse_hint({"taken_at": 1.0, "observed": observed})
    assert hint is not None and hint.object_uids() == {DEPLOY: "u1", SERVICE: None}


def test_witness_keeps_what_lists_showed() -> None:
    seen = Witness()
    seen.saw([])
    assert seen.listed == {}, "a LIST that found nothing: nothing existed"
    seen.saw([{"kind": "Deployment", "metadata": {"name": "demo", "uid": "u1"}}])
    assert seen.listed == {DEPLOY: "u1"}


def test_endpoint_states_count_the_records_of_the_region() -> None:
    def record(name: str, regions: list[str], status: dict[str, Any]) -> dict[str, Any]:
        return {"endpoint_name": name, "target_regions": regions, "region_status": status, "spec": {}}

    items = [
        record("a", [REGION], {REGION: {"state": "running"}}),
        record("b", [REGION], {REGION: {"state": "error", "error": "x"}}),
        record("c", [REGION], {}),
        record("d", ["eu-west-1"], {REGION: {"state": "deleted"}}),  # leaving: still reported here
        record("e", ["eu-west-1"], {}),  # another region's
        {"endpoint_name": 7},
    ]
    assert endpoint_states(items, REGION) == {"running": 1, "error": 1, "unknown": 1, "deleted": 1}


def test_log_fields() -> None:
    failed = result(ResultKind.INVALID, state="error", error="bad")
    assert log_fields(failed, "error", "invalid_spec", 0.04153) == {
        "endpoint": "demo",
        "result": "error",
        "duration_ms": 41.5,
        "reason": "invalid_spec",
        "state": "error",
    }
    assert log_fields(result(ResultKind.NOOP), "noop", None, 0.001) == {
        "endpoint": "demo",
        "result": "noop",
        "duration_ms": 1.0,
    }


def test_watchdog_events() -> None:
    assert watchdog_events(WatchdogResult(["a"], [], []), 300) == []
    (withheld, restored) = watchdog_events(WatchdogResult([], ["a"], ["b"]), 300)
    assert (
        withheld[:2] == ("a", EventReason.INGRESS_WITHHELD)
        and "over 300s: Ingress/inference-a removed" in withheld[2]
    )
    assert restored == (
        "b",
        EventReason.INGRESS_RESTORED,
        "a replica is ready again: Ingress/inference-b is being restored",
    )
