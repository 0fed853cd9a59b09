"""The watchdog's rule: which primary Deployments are unready (0 ready replicas, not stopped) and for how
long; past the threshold their Ingress is withheld, and a healthy or stopped one is released.

Where it stands in the flow: ``flows.watchdog`` reads one LIST and the clocks, asks ``judge_health`` and
carries out its ``HealthVerdict``. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gco_tasks.core.plan import ObservedObject


@dataclass(frozen=True)
class HealthVerdict:
    """The watchdog's decisions for one pass."""

    start_clocks: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()
    withhold: tuple[str, ...] = ()


def judge_health(
    deployments: Iterable[ObservedObject],
    clocks: Mapping[str, float],
    withheld: Iterable[str],
    now: float,
    threshold_seconds: float,
) -> HealthVerdict:
    """Primary Deployments at 0 ready replicas (and not stopped) start a clock; past the threshold their
    Ingress is withheld. A healthy or stopped endpoint clears its clock and any withholding."""
    already = set(withheld)
    start: list[str] = []
    clear: list[str] = []
    withhold: list[str] = []
    for deployment in deployments:
        if deployment.canary:
            continue
        name = deployment.name
        unhealthy = deployment.ready_replicas == 0 and (
            deployment.replicas is None or deployment.replicas > 0
        )
        if not unhealthy:
            if name in clocks or name in already:
                clear.append(name)
            continue
        since = clocks.get(name)
        if since is None:
            start.append(name)
        elif now - since > threshold_seconds and name not in already:
            withhold.append(name)
    return HealthVerdict(tuple(start), tuple(clear), tuple(withhold))
