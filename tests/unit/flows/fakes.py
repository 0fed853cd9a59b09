"""In-memory ports for the flows, as controller-runtime's fake client is for a reconciler: a cluster that
stores what is applied (and, standing in for the Deployment controller, reports every Deployment rolled
out), a table of records, and a region's Redis state. Every method a flow's ports name, nothing more."""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gco_tasks.core.config import Settings, load_settings
from gco_tasks.core.conventions import MANAGED_KINDS
from gco_tasks.core.fields import iso_now
from gco_tasks.core.paths import first_seen_changes
from gco_tasks.core.records import RegionStatus
from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.status import status_needs_write

Key = tuple[str, str]
_uids = itertools.count(1)


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    """``k=v``, ``k!=v``, ``k`` and ``k in (a,b)`` terms, all of which must hold."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    for term in (t.strip() for t in terms if t.strip()):
        if " in (" in term:
            key, values = term.split(" in (", 1)
            if labels.get(key.strip()) not in {v.strip() for v in values.rstrip(")").split(",")}:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class FakeCluster:
    """The namespace's objects by (kind, name). ``apply`` stores the object as sent (a server-side apply
    of the whole desired content); ``calls`` counts requests by verb."""

    namespace: str = "gco-inference"
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def _count(self, verb: str) -> None:
        self.calls[verb] = self.calls.get(verb, 0) + 1

    def list_objects(self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS) -> list[dict[str, Any]]:
        self._count("list")
        wanted = set(kinds)
        return [
            copy.deepcopy(obj)
            for (kind, _), obj in sorted(self.objects.items())
            if kind in wanted and _matches(obj["metadata"].get("labels") or {}, label_selector)
        ]

    def list_pages(
        self, label_selector: str, kinds: Iterable[str] = MANAGED_KINDS
    ) -> Iterator[list[dict[str, Any]]]:
        """``list_objects`` as the fan-out reads it: a page at a time (one page here)."""
        yield self.list_objects(label_selector, kinds)

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        self._count("get")
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def apply(
        self, obj: dict[str, Any], dry_run: bool = False, field_manager: str = "gco-tasks", force: bool = True
    ) -> dict[str, Any]:
        self._count("apply")
        key = (obj["kind"], obj["metadata"]["name"])
        before = self.objects.get(key)
        stored = copy.deepcopy(obj)
        metadata = stored["metadata"]
        metadata["namespace"] = self.namespace
        metadata["uid"] = before["metadata"]["uid"] if before else f"uid-{next(_uids)}"
        changed = before is None or before.get("spec") != stored.get("spec")
        generation = int(before["metadata"].get("generation", 0)) if before else 0
        metadata["generation"] = generation + 1 if changed else generation
        if stored["kind"] == "Deployment":
            stored["status"] = self.rolled_out(stored)
        if not dry_run:
            self.objects[key] = stored
        return copy.deepcopy(stored)

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create-only: the created object, or None when one of its kind and name exists (counted as one
        ``create`` request either way, as the API server's 201 or 409)."""
        self._count("create")
        if (obj["kind"], obj["metadata"]["name"]) in self.objects:
            return None
        created = self.apply(obj)
        self.calls["apply"] -= 1
        return created

    @staticmethod
    def rolled_out(deployment: Mapping[str, Any]) -> dict[str, Any]:
        """The status the Deployment controller reports once every replica of the new template is ready."""
        replicas = (deployment.get("spec") or {}).get("replicas")
        count = 1 if replicas is None else int(replicas)
        return {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": count,
            "updatedReplicas": count,
            "readyReplicas": count,
            "availableReplicas": count,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }

    def delete(self, kind: str, name: str) -> bool:
        self._count("delete")
        return self.objects.pop((kind, name), None) is not None

    def patch_json(self, kind: str, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        raise AssertionError(f"no JSON patch expected here ({kind}/{name}: {patch})")


@dataclass
class FakeStore:
    """The table: items by ``endpoint_name``, with the conditions the real store's writes carry."""

    heartbeat_seconds: int
    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    def put(self, item: Mapping[str, Any]) -> None:
        self.items[str(item["endpoint_name"])] = copy.deepcopy(dict(item))

    def get_item(self, name: str) -> dict[str, Any] | None:
        found = self.items.get(name)
        return copy.deepcopy(found) if found is not None else None

    def get_items(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        return {name: copy.deepcopy(self.items[name]) if name in self.items else None for name in names}

    def scan_items(self, target_region: str | None = None) -> Iterator[dict[str, Any]]:
        for item in list(self.items.values()):
            if target_region is None or target_region in (item.get("target_regions") or []):
                yield copy.deepcopy(item)

    def update_region_status(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        previous: Mapping[str, Any] | RegionStatus | None,
        now: datetime | None = None,
    ) -> bool:
        moment = now or datetime.now(UTC)
        if name not in self.items or not status_needs_write(status, previous, moment, self.heartbeat_seconds):
            return False
        entry = status.model_copy(update={"last_sync": iso_now(moment)}).to_dict()
        self.items[name].setdefault("region_status", {})[region] = entry
        return True

    def remove_region_status(self, name: str, region: str) -> bool:
        return self.items.get(name, {}).get("region_status", {}).pop(region, None) is not None

    def promote_if_deploying(
        self, name: str, updated_at: str | None = None, region: str | None = None
    ) -> bool:
        item = self.items.get(name)
        if item is None or item.get("desired_state") != "deploying":
            return False
        if updated_at is not None and item.get("updated_at") != updated_at:
            return False
        item["desired_state"] = "running"
        item["updated_at"] = iso_now()
        if region is not None:
            item["region_status"][region]["observed_updated_at"] = item["updated_at"]
        return True

    def report_running_and_promote(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        updated_at: str | None,
        now: datetime | None = None,
    ) -> bool:
        item = self.items.get(name)
        if item is None or item.get("desired_state") != "deploying" or item.get("updated_at") != updated_at:
            return False
        if not isinstance(item.get("region_status"), dict):
            return False
        item["desired_state"] = "running"
        item["updated_at"] = iso_now()
        entry = status.model_copy(
            update={"last_sync": iso_now(now or datetime.now(UTC)), "observed_updated_at": item["updated_at"]}
        )
        item["region_status"][region] = entry.to_dict()
        return True

    def delete_if_unchanged(self, name: str, updated_at: str | None) -> bool:
        item = self.items.get(name)
        if item is None or item.get("desired_state") != "deleted" or item.get("updated_at") != updated_at:
            return False
        del self.items[name]
        return True


@dataclass
class FakeState:
    """The region's Redis state: locks, pending marks, cycle claims, the watchdog's memory and the paths'
    first sightings."""

    held: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    claimed: set[int] = field(default_factory=set)
    clocks: dict[str, float] = field(default_factory=dict)
    withheld_names: set[str] = field(default_factory=set)
    first_seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # paths' seniority

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[bool]:
        if key in self.held:
            yield False
            return
        self.held.add(key)
        try:
            yield True
        finally:
            self.held.discard(key)

    def endpoint_lock(self, name: str, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        return self._lock(f"endpoint:{name}")

    def fan_out_lock(self, ttl_seconds: float) -> contextlib.AbstractContextManager[bool]:
        return self._lock("fan-out")

    def mark_pending_many(self, names: Iterable[str], ttl_seconds: int) -> dict[str, bool]:
        marks = {}
        for name in names:
            marks[name] = name not in self.pending
            self.pending.add(name)
        return marks

    def clear_pending(self, name: str) -> None:
        self.pending.discard(name)

    def claim_cycle(self, cycle: int, ttl_seconds: int) -> bool:
        first = cycle not in self.claimed
        self.claimed.add(cycle)
        return first

    def schedule_requeue(
        self, name: str, now: float, first: float, cap: float, interval: float
    ) -> float | None:
        """No requeue here: the fakes' Deployments roll out at once (``FakeCluster.rolled_out``)."""
        return None

    def clear_requeue(self, name: str) -> None:
        return None

    def requeue_marks(self, names: Iterable[str]) -> dict[str, tuple[float, float]]:
        return {}

    def withheld(self) -> set[str]:
        return set(self.withheld_names)

    def is_withheld(self, name: str) -> bool:
        return name in self.withheld_names

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            self.clocks.pop(name, None)
            self.withheld_names.discard(name)

    def unready_clocks(self) -> dict[str, float]:
        return dict(self.clocks)

    def start_clocks(self, names: Iterable[str], now: float) -> None:
        for name in names:
            self.clocks.setdefault(name, now)

    def withhold(self, names: Iterable[str]) -> None:
        self.withheld_names.update(names)

    def paths_first_seen(self, names: Iterable[str] | None = None) -> dict[str, tuple[str, float]]:
        wanted = self.first_seen if names is None else set(names)
        return {name: self.first_seen[name] for name in wanted if name in self.first_seen}

    def note_paths(
        self, paths: Mapping[str, str], now: float, serving: Mapping[str, float] | None = None
    ) -> dict[str, tuple[str, float]]:
        new, gone = first_seen_changes(paths, self.first_seen, now, serving)
        for name in gone:
            del self.first_seen[name]
        self.first_seen.update(new)
        return dict(self.first_seen)


@dataclass
class FakePorts:
    """What ``fleet.Fleet`` gives a flow, in memory."""

    settings: Settings
    store: FakeStore
    cluster: FakeCluster
    state: FakeState
    render_options: RenderOptions
    configurations_run: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def create(cls, region: str = "us-east-1", **settings: Any) -> FakePorts:
        loaded = load_settings({}, region=region, redis_url="redis://unused:6379/0", **settings)
        options = RenderOptions.from_settings(loaded)
        return cls(
            settings=loaded,
            store=FakeStore(loaded.status_heartbeat_seconds),
            cluster=FakeCluster(options.namespace),
            state=FakeState(),
            render_options=options,
        )
