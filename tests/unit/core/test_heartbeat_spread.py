"""Periodic work spread evenly (issue 26, item 3): a cycle sends at most N x interval / heartbeat period
resyncs and overdue heartbeats (``triage.due`` under ``triage.periodic_budget``), however many are due
at once, and those left over go in later cycles."""

from __future__ import annotations

from gco_tasks.core.triage import Verdict, due, periodic_budget, resync_cycles, resync_due

NOW = 1_800_000_000.0
INTERVAL, HEARTBEAT = 15, 300
NAMES = [f"bench-{index:04d}" for index in range(10_000)]


def slots(now: float) -> dict[str, Verdict]:
    cycles = resync_cycles(HEARTBEAT, INTERVAL)
    return {name: Verdict("resync" if resync_due(name, now, INTERVAL, cycles) else None) for name in NAMES}


def test_the_budget_is_n_times_interval_over_the_heartbeat_period() -> None:
    assert periodic_budget(10_000, INTERVAL, HEARTBEAT) == 500
    assert periodic_budget(1_000, INTERVAL, HEARTBEAT) == 50
    assert periodic_budget(7, INTERVAL, HEARTBEAT) == 1  # rounded up: a small fleet is still resynced
    assert periodic_budget(0, INTERVAL, HEARTBEAT) == 0


def test_a_steady_cycle_sends_at_most_the_budget_and_every_endpoint_once_a_period() -> None:
    budget = periodic_budget(len(NAMES), INTERVAL, HEARTBEAT)
    cycles = resync_cycles(HEARTBEAT, INTERVAL)
    covered: set[str] = set()
    for index in range(cycles):
        sent = due(slots(NOW + index * INTERVAL), budget)
        assert 0 < len(sent) <= budget, f"cycle {index}: {len(sent)} sent"
        covered.update(sent)
    assert len(covered) >= 0.99 * len(NAMES), "a slot over the budget leaves a few for a later cycle"


def test_heartbeats_all_overdue_at_once_never_pile_up_into_one_cycle() -> None:
    """After a cold start wrote every status within one minute, or after cycles were missed, every
    endpoint's heartbeat is overdue at once: each cycle sends its budget, the rest wait, none starves."""
    budget = periodic_budget(len(NAMES), INTERVAL, HEARTBEAT)
    overdue = set(NAMES)
    cycles_needed = 0
    while overdue:
        now = NOW + cycles_needed * INTERVAL
        found = {name: Verdict("heartbeat") for name in overdue}
        found.update({name: verdict for name, verdict in slots(now).items() if verdict.reason})
        sent = due(found, budget)
        assert len(sent) <= budget, f"cycle {cycles_needed}: {len(sent)} sent"
        overdue -= set(sent)
        cycles_needed += 1
        assert cycles_needed <= 2 * len(NAMES) // budget + 2, "overdue heartbeats starve"


def test_work_is_never_held_back_by_the_budget() -> None:
    found = {
        "changed": Verdict("change"),
        "rolling": Verdict("rollout"),
        "slot-1": Verdict("resync"),
        "slot-2": Verdict("resync"),
        "late": Verdict("heartbeat"),
        "quiet": Verdict(None),
    }
    assert due(found, 0) == ["changed", "rolling"]
    assert len(due(found, 2)) == 4
    assert set(due(found, 2)) >= {"changed", "rolling"}
    assert "late" not in due(found, 2), "resync slots go before overdue heartbeats"
    assert due(found, 10) == ["changed", "late", "rolling", "slot-1", "slot-2"]
