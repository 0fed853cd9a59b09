"""A ``reconcile_endpoints`` message as it arrives from the queue (anyone who can publish may have written
it): its names must be a list of strings, at most ``BATCH_MAX``; a hint that does not parse is none."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from gco_tasks.core.errors import ReconcileFailed
from gco_tasks.worker.tasks import BATCH_MAX, batch_requests


@pytest.mark.parametrize(
    ("names", "says"),
    [
        ("demo", "names must be a list of endpoint names"),
        (["demo", 7], "names must be a list of endpoint names"),
        (None, "names must be a list of endpoint names"),
        ([f"e{i}" for i in range(BATCH_MAX + 1)], f"at most {BATCH_MAX} to a message"),
    ],
    ids=["a string", "a number among them", "none", "too many"],
)
def test_a_message_that_does_not_name_endpoints_is_refused_with_what_is_wrong(names: Any, says: str) -> None:
    with pytest.raises(ReconcileFailed, match=says):
        batch_requests(names, None)


def test_each_name_gets_its_own_hint_and_one_that_does_not_parse_is_none() -> None:
    good = {"taken_at": 1_700_000_000.0, "observed": [], "reason": "change"}
    requests = batch_requests(["a", "b", "c"], {"a": good, "b": {"taken_at": "soon"}, "x": good})
    assert [name for name, _ in requests] == ["a", "b", "c"]
    hints = dict(requests)
    assert hints["a"] is not None and hints["a"].reason == "change"
    assert hints["b"] is None and hints["c"] is None
    assert all(hint is None for _, hint in batch_requests(["a"], ["not", "a", "mapping"]))


def test_a_batchs_result_reaches_flower_and_the_events_whole() -> None:
    """Celery's events carry a task's result as ``saferepr`` writes it: three levels deep at most and cut
    at ``resultrepr_maxsize``; a batch's result must survive both (each endpoint's actions included)."""
    from celery.utils.saferepr import saferepr

    from gco_tasks.core.results import ReconcileResult, ResultKind
    from gco_tasks.worker.tasks import BATCH_RESULT_REPR_BYTES, BATCH_SIZE, _answer_dict, reconcile_endpoints

    applied = ("apply Deployment/endpoint-with-a-long-name-0", "apply Service/endpoint-with-a-long-name-0")
    results = [
        _answer_dict(f"e{i}", ReconcileResult(f"e{i}", ResultKind.APPLIED, applied, state="creating"))
        for i in range(BATCH_SIZE)
    ]
    shown = saferepr(results, reconcile_endpoints.resultrepr_maxsize)
    assert reconcile_endpoints.resultrepr_maxsize == BATCH_RESULT_REPR_BYTES
    assert ast.literal_eval(shown) == results, shown
