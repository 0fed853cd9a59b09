"""The write budget's arithmetic, on a clock the test moves: the local token bucket (the fallback while
Redis is away), the settings that size it and the parallel Scan's segment count. The shared bucket in
Redis runs the same arithmetic in Lua: ``tests/integration/test_write_pacing.py``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gco_tasks.adapters.dynamo_client import MAX_SCAN_SEGMENTS, scan_segments_for
from gco_tasks.adapters.ratelimit import LocalTokenBucket
from gco_tasks.core.config import ConfigError, load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_grants_its_burst_at_once_then_one_slot_per_interval() -> None:
    clock = Clock()
    bucket = LocalTokenBucket(rate=10.0, burst=3, clock=clock)
    waits = [bucket.reserve(max_wait=10).wait for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, pytest.approx(0.1), pytest.approx(0.2)]
    clock.now += 0.2  # the two reserved slots are now due; the next one is 0.1 s away
    assert bucket.reserve(max_wait=10).wait == pytest.approx(0.1)


def test_a_slot_beyond_the_max_wait_is_not_reserved() -> None:
    clock = Clock()
    bucket = LocalTokenBucket(rate=1.0, burst=1, clock=clock)
    assert bucket.reserve(max_wait=2).reserved
    assert bucket.reserve(max_wait=2).wait == pytest.approx(1.0)
    assert bucket.reserve(max_wait=2).wait == pytest.approx(2.0)
    refused = bucket.reserve(max_wait=2)
    assert not refused.reserved and refused.wait == pytest.approx(3.0)
    assert bucket.reserve(max_wait=2).wait == pytest.approx(3.0)  # refusing took nothing


def test_hold_off_empties_the_bucket_for_the_time_asked() -> None:
    clock = Clock()
    bucket = LocalTokenBucket(rate=10.0, burst=100, clock=clock)
    bucket.reserve(max_wait=10, hold=2.0)
    assert bucket.reserve(max_wait=10).wait == pytest.approx(2.1)
    clock.now += 60  # refilled, but never above the burst
    assert bucket.tokens <= 100
    assert [bucket.reserve(max_wait=10).wait for _ in range(100)] == [0.0] * 100


@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=200),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_no_window_ever_gets_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Callers arrive at arbitrary times; each goes at its reserved slot. Over the whole run the slots
    never exceed what the bucket allows (burst + rate x elapsed), and no slot is given to anyone twice."""
    clock = Clock()
    start = clock.now
    bucket = LocalTokenBucket(rate=rate, burst=burst, clock=clock)
    slots = []
    for gap in gaps:
        clock.now += gap
        reservation = bucket.reserve(max_wait=1e9)
        assert reservation.reserved
        slots.append(clock.now + reservation.wait)
    assert slots == sorted(slots)
    assert len(slots) <= burst + rate * (slots[-1] - start) + 1e-6


def test_write_budget_settings_default_and_refuse_nonsense() -> None:
    settings = load_settings({})
    assert (settings.kube_write_rate, settings.kube_write_burst) == (50.0, 100)
    assert settings.dynamodb_scan_segments == 0
    tuned = load_settings({"KUBE_WRITE_RATE": "500", "KUBE_WRITE_BURST": "1000"})
    assert (tuned.kube_write_rate, tuned.kube_write_burst) == (500.0, 1000)
    with pytest.raises(ConfigError) as caught:
        load_settings({"KUBE_WRITE_RATE": "0", "KUBE_WRITE_BURST": "0", "DYNAMODB_SCAN_SEGMENTS": "-1"})
    message = str(caught.value)
    assert "KUBE_WRITE_RATE" in message and "KUBE_WRITE_BURST" in message
    assert "DYNAMODB_SCAN_SEGMENTS" in message


def test_scan_segments_grow_with_the_table_and_stay_bounded() -> None:
    assert scan_segments_for(0) == 1
    assert scan_segments_for(500_000) == 1
    assert scan_segments_for(5 * 1024 * 1024) == 3
    assert scan_segments_for(10**12) == MAX_SCAN_SEGMENTS
