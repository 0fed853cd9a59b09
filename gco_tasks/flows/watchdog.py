"""The watchdog: an endpoint at 0 ready replicas for longer than the threshold loses its Ingress (so the
shared ALB stops sending it traffic); it gets it back within the cycle that sees it ready again.

Where it stands in the flow: beat sends the ``watchdog`` task on its own schedule. More in
docs/architecture.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

from gco_tasks.core import conventions as names
from gco_tasks.core.config import Settings
from gco_tasks.core.health import HealthVerdict, judge_health
from gco_tasks.core.plan import ObservedObject
from gco_tasks.core.ports import Cluster, Sender, WatchdogClocks
from gco_tasks.core.results import WatchdogResult

log = logging.getLogger(__name__)


class WatchdogPorts(Protocol):
    """What the watchdog reads and writes (``fleet.Fleet`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def cluster(self) -> Cluster: ...
    @property
    def state(self) -> WatchdogClocks: ...


def releases(
    verdict: HealthVerdict, clocks: Mapping[str, float], withheld: set[str], primaries: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(endpoints whose clocks and withholding end: healthy, stopped or gone; those among them that were
    withheld and recovered, to reconcile at once). Pure."""
    gone = (set(clocks) | withheld) - set(primaries)
    recovered = sorted(withheld & set(verdict.clear))
    return [*verdict.clear, *gone], recovered


def watchdog(ports: WatchdogPorts, send: Sender | None = None, now: float | None = None) -> WatchdogResult:
    """Withhold the Ingress of endpoints at 0 ready replicas for longer than the threshold (protecting the
    shared ALB); end the withholding of those that recovered and reconcile them at once."""
    now = time.time() if now is None else now
    deployments = ports.cluster.list_objects(names.MANAGED_SELECTOR, ["Deployment"])
    primaries = [d for d in map(ObservedObject.from_object, deployments) if not d.canary]
    clocks = ports.state.unready_clocks()
    withheld = ports.state.withheld()
    threshold = ports.settings.inference_unhealthy_threshold_seconds
    verdict = judge_health(primaries, clocks, withheld, now, threshold)
    ports.state.start_clocks(verdict.start_clocks, now)
    for name in verdict.withhold:
        ports.cluster.delete("Ingress", names.ingress_name(name))
        log.warning("%s: 0 ready replicas for too long; Ingress withheld to protect the shared ALB", name)
    ports.state.withhold(verdict.withhold)
    released, recovered = releases(verdict, clocks, withheld, (d.name for d in primaries))
    ports.state.release(released)
    if send is not None:
        for name in recovered:
            send(name, None)
    return WatchdogResult(
        unready=sorted(set(clocks) | set(verdict.start_clocks)),
        withheld=list(verdict.withhold),
        recovered=recovered,
    )
