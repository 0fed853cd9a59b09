"""The fan-out at scale, with fakes (issue 26, item 3): it streams the LIST pages through triage instead
of holding every object of the region, and a cycle's periodic messages stay within N x interval /
heartbeat period even when every heartbeat is overdue at once."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from bench.fanout_inproc import Ports, World
from gco_tasks.core.conventions import MANAGED_KINDS
from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.triage import periodic_budget
from gco_tasks.flows.fanout import fan_out

NOW = 1_800_000_000.0
PAGE = 50


class Listed(dict[str, Any]):
    """A listed object that can be watched (weakly) for as long as something holds it."""


class WatchedCluster:
    """LIST pages of ``PAGE`` objects; counts how many listed objects are still alive each time the
    fan-out asks for the next page (and at the end): what it holds at once."""

    def __init__(self, world: World) -> None:
        self.objects = [
            obj for kind in MANAGED_KINDS for page in world.lists[kind] for obj in json.loads(page)["items"]
        ]
        self.alive = 0
        self.most_held = 0
        self.listed = 0

    def _count(self) -> None:
        gc.collect()
        self.most_held = max(self.most_held, self.alive)

    def _gone(self) -> None:
        self.alive -= 1

    def list_pages(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> Iterator[list[Any]]:
        for start in range(0, len(self.objects), PAGE):
            self._count()
            page = [Listed(json.loads(json.dumps(obj))) for obj in self.objects[start : start + PAGE]]
            for obj in page:
                weakref.finalize(obj, self._gone)
            self.alive += len(page)
            self.listed += len(page)
            yield page
        self._count()

    def list_objects(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> list[Any]:
        return [obj for page in self.list_pages(label_selector, kinds) for obj in page]


def test_the_fan_out_holds_a_page_of_listed_objects_not_the_region() -> None:
    world = World(120, RenderOptions())
    ports = Ports(world, RenderOptions())
    cluster = WatchedCluster(world)
    ports.cluster = cluster  # type: ignore[assignment]
    result = fan_out(ports, lambda name, snapshot: None, now=NOW)  # type: ignore[arg-type]
    assert result.records == 120 and cluster.listed == world.objects > 3 * PAGE
    assert cluster.most_held <= 2 * PAGE, (
        f"{cluster.most_held} of {world.objects} listed objects held at once"
    )


def test_overdue_heartbeats_are_sent_within_the_budget_not_all_at_once() -> None:
    """Every status was last written an hour ago (a worker down, or a cold start that wrote them all
    within a minute): without the budget every endpoint would be sent in one cycle."""
    stale = datetime.fromtimestamp(NOW - 3600, UTC).isoformat()
    world = World(200, RenderOptions(), synced=stale)
    ports = Ports(world, RenderOptions())
    budget = periodic_budget(200, 15, 300)
    sent_per_cycle = []
    for index in range(3):
        result = fan_out(ports, lambda name, _: None, now=NOW + 15 * index)  # type: ignore[arg-type]
        sent_per_cycle.append(result.sent)
    assert all(0 < count <= budget for count in sent_per_cycle), (sent_per_cycle, budget)
