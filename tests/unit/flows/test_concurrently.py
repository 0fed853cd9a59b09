"""``flows.concurrently``: calls sent together come back in order, with their errors, in the caller's
context, and truly overlap."""

from __future__ import annotations

import contextvars
import threading

import pytest

from gco_tasks.flows.concurrently import MAX_IN_FLIGHT, run_all

_field: contextvars.ContextVar[str] = contextvars.ContextVar("field", default="unset")


def test_outcomes_come_back_in_the_order_of_the_calls_with_each_error_kept() -> None:
    def fail() -> int:
        raise ValueError("second")

    outcomes = run_all([lambda: 1, fail, lambda: 3])
    assert [o.value for o in outcomes] == [1, None, 3]
    assert isinstance(outcomes[1].error, ValueError) and str(outcomes[1].error) == "second"
    assert outcomes[0].error is None and outcomes[2].error is None


def test_a_single_call_runs_in_the_callers_thread() -> None:
    [outcome] = run_all([threading.get_ident])
    assert outcome.value == threading.get_ident()
    assert run_all([]) == []


def test_every_call_sees_the_callers_context() -> None:
    token = _field.set("endpoint=demo")
    try:
        outcomes = run_all([_field.get, _field.get, _field.get])
    finally:
        _field.reset(token)
    assert [o.value for o in outcomes] == ["endpoint=demo"] * 3


@pytest.mark.parametrize("calls", [2, MAX_IN_FLIGHT])
def test_calls_overlap_each_waits_for_all_the_others(calls: int) -> None:
    # Each call waits at a barrier that opens only when all have arrived: run one after the other, the
    # first would wait forever (the barrier's timeout turns that into a BrokenBarrierError).
    barrier = threading.Barrier(calls, timeout=10)
    outcomes = run_all([barrier.wait for _ in range(calls)])
    assert [o.error for o in outcomes] == [None] * calls
    assert sorted(o.value for o in outcomes if o.value is not None) == list(range(calls))
