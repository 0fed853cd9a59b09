"""The one result vocabulary (``gco_tasks.core.results``): a reconcile's metric label, and the typed
results of the cycle tasks as Celery, Flower and dashboards read them (the same JSON keys)."""

from __future__ import annotations

import json

import pytest

from gco_tasks.core.results import (
    RESULT_LABELS,
    FanOutResult,
    PurgeResult,
    ReconcileResult,
    ResultKind,
    StreamPollResult,
    TriageReason,
    WatchdogResult,
)


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (ReconcileResult("a", ResultKind.SKIPPED_LOCKED, skipped="locked"), ResultKind.SKIPPED_LOCKED),
        (ReconcileResult("a", ResultKind.ERROR, ("Service/a",), error="422"), ResultKind.ERROR),
        (ReconcileResult("a", ResultKind.INVALID, error="spec.port"), ResultKind.ERROR),
        (ReconcileResult("a", ResultKind.APPLIED, ("Deployment/a",), ("Ingress/x",)), ResultKind.APPLIED),
        (ReconcileResult("a", ResultKind.DELETED, deleted=("Ingress/x",)), ResultKind.DELETED),
        (ReconcileResult("a", ResultKind.ORPHAN_REMOVED, deleted=("Service/a",)), ResultKind.DELETED),
        (ReconcileResult("a", ResultKind.NOOP), ResultKind.NOOP),
    ],
)
def test_every_result_maps_to_one_metric_label(result: ReconcileResult, label: ResultKind) -> None:
    assert result.label is label and label in RESULT_LABELS


def test_the_cycle_results_keep_their_json_keys() -> None:
    fanned = FanOutResult(3, 1, 1, 1, {TriageReason.DRIFT: 1}, ["gone"])
    assert json.loads(json.dumps(fanned.as_dict())) == {
        "records": 3,
        "sent": 1,
        "already_pending": 1,
        "in_sync": 1,
        "reasons": {"drift": 1},
        "orphans": ["gone"],
    }
    assert FanOutResult(skipped="busy").as_dict() == {"skipped": "busy"}
    assert WatchdogResult(["a"], [], ["b"]).as_dict() == {
        "unready": ["a"],
        "withheld": [],
        "recovered": ["b"],
    }
    assert PurgeResult(["a"]).as_dict() == {"purged": ["a"]}
    assert StreamPollResult(2, 1, 1).as_dict() == {"changes": 2, "sent": 1, "already_pending": 1}
    assert StreamPollResult(skipped="busy").as_dict() == {"skipped": "busy"}


def test_triage_reasons_are_the_strings_the_logs_count() -> None:
    assert (
        TriageReason.WATCHDOG_RELEASE == "watchdog-release"
        and str(TriageReason.STATUS_ENTRY) == "status-entry"
    )
