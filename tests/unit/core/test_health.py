"""The watchdog's rule (``gco_tasks.core.health``): clocks start at 0 ready replicas, the Ingress is
withheld past the threshold, and a healthy, stopped or canary Deployment is left alone."""

from __future__ import annotations

from gco_tasks.core.health import judge_health
from gco_tasks.core.plan import ObservedObject


def deployment(ready: int, replicas: int | None = 2) -> ObservedObject:
    return ObservedObject(
        kind="Deployment", name="demo", replicas=replicas, ready_replicas=ready, updated_replicas=ready
    )


def test_watchdog_starts_clocks_then_withholds_then_clears() -> None:
    sick = deployment(0)
    first = judge_health([sick], {}, [], now=100.0, threshold_seconds=300)
    assert first.start_clocks == ("demo",) and not first.withhold
    early = judge_health([sick], {"demo": 100.0}, [], now=350.0, threshold_seconds=300)
    assert not early.withhold
    late = judge_health([sick], {"demo": 100.0}, [], now=401.0, threshold_seconds=300)
    assert late.withhold == ("demo",)
    healed = judge_health([deployment(1)], {"demo": 100.0}, ["demo"], now=500.0, threshold_seconds=300)
    assert healed.clear == ("demo",)


def test_watchdog_ignores_stopped_and_canary_deployments() -> None:
    stopped = deployment(0, replicas=0)
    canary = ObservedObject(kind="Deployment", name="demo-canary", canary=True, replicas=1)
    verdict = judge_health([stopped, canary], {}, [], now=1000.0, threshold_seconds=0)
    assert verdict.start_clocks == () and verdict.withhold == ()
