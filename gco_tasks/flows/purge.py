"""Purge: remove the records of deleted endpoints once every target region reports ``deleted`` (and none still
reports ``deleting``).

Where it stands in the flow: beat sends the ``purge`` task on its own schedule. More in
docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from gco_tasks.core.ports import RecordPurge, RecordScan
from gco_tasks.core.records import RecordHeader
from gco_tasks.core.results import PurgeResult
from gco_tasks.core.status import is_purgeable, reported_states, target_states

log = logging.getLogger(__name__)


class PurgeStore(RecordScan, RecordPurge, Protocol): ...


class PurgePorts(Protocol):
    """What a purge reads and deletes (``fleet.Fleet`` provides it)."""

    @property
    def store(self) -> PurgeStore: ...


def purgeable(item: Mapping[str, Any]) -> RecordHeader | None:
    """The record's header when it may be purged (``deleted``, every target region reports ``deleted``)."""
    if not isinstance(item.get("endpoint_name"), str):
        return None
    header = RecordHeader.from_item(item)
    states = target_states(header)
    done = is_purgeable(header.desired_state, header.target_regions, states, reported_states(header))
    return header if done else None


def purge(ports: PurgePorts) -> PurgeResult:
    """Remove records whose every target region reports ``deleted``, by the store's conditional delete."""
    purged: list[str] = []
    for item in ports.store.scan_items():
        header = purgeable(item)
        if header is not None and ports.store.delete_if_unchanged(header.endpoint_name, header.updated_at):
            purged.append(header.endpoint_name)
    if purged:
        log.info("purged %d deleted endpoint(s): %s", len(purged), ", ".join(purged))
    return PurgeResult(purged)
