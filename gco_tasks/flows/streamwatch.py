"""React to the table's changes without waiting for the next cycle: the endpoints whose desired state changed
in the DynamoDB Stream get a reconcile now (optional, ``STREAM_POLL_SECONDS``; off at 0).

Where it stands in the flow: beside ``fan_out``. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from gco_tasks.core.config import Settings
from gco_tasks.core.ports import FanOutMarks, Sender
from gco_tasks.core.results import StreamPollResult

log = logging.getLogger(__name__)

#: The attributes that make up an endpoint's desired state: a change elsewhere (``region_status``, what
#: the fleets write back) is not worth a reconcile.
DESIRED = ("desired_state", "target_regions", "spec", "namespace", "updated_at", "labels", "ingress_path")


class Change(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def old(self) -> Mapping[str, Any] | None: ...
    @property
    def new(self) -> Mapping[str, Any] | None: ...


class StreamBatches(Protocol):
    def batch(self) -> AbstractContextManager[Sequence[Change] | None]: ...


class StreamPorts(Protocol):
    """What a stream poll reads and marks (``fleet.Fleet`` provides it)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def state(self) -> FanOutMarks: ...
    @property
    def stream(self) -> StreamBatches: ...


def _targets(image: Mapping[str, Any] | None, region: str) -> bool:
    regions = (image or {}).get("target_regions")
    return isinstance(regions, list) and region in regions


def matters(change: Change, region: str) -> bool:
    """A change this region should act on: the record targets (or targeted) it, or the stream has no
    images to tell (KEYS_ONLY); and, when both images are there, its desired state changed."""
    if not change.name:
        return False
    if change.old is None and change.new is None:
        return True
    if not (_targets(change.old, region) or _targets(change.new, region)):
        return False
    if change.old is not None and change.new is not None:
        return any(change.old.get(key) != change.new.get(key) for key in DESIRED)
    return True


def changed_endpoints(changes: Iterable[Change], region: str) -> list[str]:
    """The endpoints to reconcile now, each once, in the order they first changed."""
    return list(dict.fromkeys(change.name for change in changes if matters(change, region)))


def poll_stream(ports: StreamPorts, send: Sender) -> StreamPollResult:
    """One read of the stream: a reconcile for each endpoint whose desired state changed here."""
    settings = ports.settings
    with ports.stream.batch() as changes:
        if changes is None:
            return StreamPollResult(skipped="another stream reader of this region is running")
        names = changed_endpoints(changes, settings.region)
        marks = ports.state.mark_pending_many(names, settings.message_ttl_seconds)
        sent = [name for name in names if marks[name]]
        for name in sent:
            send(name, None)
    if sent:
        log.info("stream %s: %d changes, reconcile sent for %s", settings.region, len(changes), sent)
    return StreamPollResult(changes=len(changes), sent=len(sent), already_pending=len(names) - len(sent))
