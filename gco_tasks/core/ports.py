"""The narrow ports through which the flows (``reconciler``, ``fanout``, ``watchdog``, ``purge``) do their
I/O: one small protocol per capability, each satisfied by an adapter.

Where it stands in the flow: between the flows and the adapters. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from gco_tasks.core.hint import Hint
from gco_tasks.core.records import RegionStatus

#: Sends one reconcile message: (endpoint name, hint) -> None (no hint: the worker reads it all itself).
Sender = Callable[[str, Hint | None], None]


# --- the cluster (cluster.ClusterGateway) --------------------------------------------------------


class ClusterReads(Protocol):
    def list_objects(self, label_selector: str, kinds: Iterable[str] = ...) -> list[dict[str, Any]]: ...


class ClusterPages(Protocol):
    """The same LISTs one page at a time (the fan-out lets each page go once digested)."""

    def list_pages(
        self, label_selector: str, kinds: Iterable[str] = ...
    ) -> Iterator[list[dict[str, Any]]]: ...


class ClusterGets(Protocol):
    def get_object(self, kind: str, name: str) -> dict[str, Any] | None: ...


class ClusterWrites(Protocol):
    def apply(
        self, obj: dict[str, Any], dry_run: bool = ..., field_manager: str = ..., force: bool = ...
    ) -> dict[str, Any]: ...

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None: ...

    def delete(self, kind: str, name: str) -> bool: ...


class ObjectPatches(Protocol):
    """A JSON patch of one object (the hand-over of GCO's field ownership)."""

    def patch_json(self, kind: str, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]: ...


class Cluster(ClusterReads, ClusterGets, ClusterWrites, ObjectPatches, Protocol):
    """Reads and writes of the region's inference objects."""


class WritePacer(Protocol):
    """The region's budget of Kubernetes writes (``ratelimit.RedisWritePacer``), which the gateway asks
    before every write."""

    def acquire(self) -> None:
        """Return when this write may go; raise a ``TransientError`` with ``retry_after`` when its slot is
        too far away."""

    def hold_off(self, seconds: float) -> None:
        """The API server answered 429 with Retry-After ``seconds``: delay every write of the region."""


# --- the table (store.EndpointStore) -------------------------------------------------------------


class RecordScan(Protocol):
    def scan_items(self, target_region: str | None = None) -> Iterator[dict[str, Any]]: ...


class RecordRead(Protocol):
    def get_item(self, name: str) -> dict[str, Any] | None: ...


class RecordBatchRead(Protocol):
    def get_items(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]: ...


class StatusReports(Protocol):
    def update_region_status(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        previous: Mapping[str, Any] | RegionStatus | None,
        now: datetime | None = None,
    ) -> bool: ...

    def remove_region_status(self, name: str, region: str) -> bool: ...

    def promote_if_deploying(
        self, name: str, updated_at: str | None = ..., region: str | None = ...
    ) -> bool: ...

    def report_running_and_promote(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        updated_at: str | None,
        now: datetime | None = None,
    ) -> bool: ...


class RecordPurge(Protocol):
    def delete_if_unchanged(self, name: str, updated_at: str | None) -> bool: ...


# --- Redis (locks.RegionState) -------------------------------------------------------------------


class EndpointLocks(Protocol):
    def endpoint_lock(self, name: str, ttl_seconds: float) -> AbstractContextManager[bool]: ...

    def clear_pending(self, name: str) -> None: ...


class RolloutRequeues(Protocol):
    """An endpoint's rollout backoff (``locks.RegionState``): when to look again while it lasts."""

    def schedule_requeue(
        self, name: str, now: float, first: float, cap: float, interval: float
    ) -> float | None: ...

    def clear_requeue(self, name: str) -> None: ...


class PathFirstSeen(Protocol):
    """When the fleet first saw each record ask for its ingress path (``paths.FirstSeen``)."""

    def paths_first_seen(self, names: Iterable[str] | None = None) -> dict[str, tuple[str, float]]: ...

    def note_paths(
        self, paths: Mapping[str, str], now: float, serving: Mapping[str, float] | None = None
    ) -> dict[str, tuple[str, float]]: ...


class FanOutMarks(PathFirstSeen, Protocol):
    def fan_out_lock(self, ttl_seconds: float) -> AbstractContextManager[bool]: ...

    def mark_pending_many(self, names: Iterable[str], ttl_seconds: int) -> dict[str, bool]: ...

    def withheld(self) -> set[str]: ...

    def claim_cycle(self, cycle: int, ttl_seconds: int) -> bool: ...

    def requeue_marks(self, names: Iterable[str]) -> dict[str, tuple[float, float]]: ...


class Withheld(Protocol):
    """Which endpoints' Ingress the watchdog withholds (read by every reconcile)."""

    def is_withheld(self, name: str) -> bool: ...

    def release(self, names: Iterable[str]) -> None: ...


class WatchdogClocks(Withheld, Protocol):
    def unready_clocks(self) -> dict[str, float]: ...

    def withheld(self) -> set[str]: ...

    def start_clocks(self, names: Iterable[str], now: float) -> None: ...

    def withhold(self, names: Iterable[str]) -> None: ...
