"""Kubernetes Events about what the fleet did to an endpoint, on its Deployment (``kubectl describe``).

Where it stands in the flow: after each ``reconcile_endpoint`` and watchdog pass, ``worker.telemetry``
calls ``EventRecorder.record`` for each thing the task did; best effort, aggregated as client-go's
recorder does, paced with the region's writes. More in docs/architecture.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gco_tasks.adapters import metric_labels, metrics
from gco_tasks.adapters.metric_labels import EventOutcome
from gco_tasks.core.ports import WritePacer

log = logging.getLogger(__name__)

REPORTING_CONTROLLER: Final = "gco-tasks"
NOTE_LIMIT_BYTES: Final = 1024  # the API server rejects a longer note
INSTANCE_LIMIT: Final = 128
MERGE_PATCH: Final = "application/merge-patch+json"


class EventReason(StrEnum):
    """The bounded set of reasons (CamelCase, as Kubernetes' own)."""

    APPLIED = "Applied"  # objects created or changed (the note says which and what changed)
    DELETED = "Deleted"  # objects deleted (endpoint deleted, stopped parts, region removed)
    ORPHAN_REMOVED = "OrphanRemoved"  # our labels, no record: removed
    INGRESS_WITHHELD = "IngressWithheld"  # the watchdog removed the Ingress: 0 ready replicas too long
    INGRESS_RESTORED = "IngressRestored"  # ready again: the Ingress is back
    PROMOTED = "Promoted"  # every target region running: desired state deploying -> running
    ROLLOUT_STUCK = "RolloutStuck"  # the Deployment does not progress
    INVALID_SPEC = "InvalidSpec"  # the record fails validation: nothing changed in the cluster
    APPLY_FAILED = "ApplyFailed"  # the API server refused an object (e.g. 422)
    DELETE_FAILED = "DeleteFailed"


@dataclass(frozen=True)
class ReasonKind:
    type: str  # Normal or Warning
    action: str  # what was done or attempted (CamelCase, at most 128 characters)


REASONS: Final[Mapping[EventReason, ReasonKind]] = {
    EventReason.APPLIED: ReasonKind("Normal", "Apply"),
    EventReason.DELETED: ReasonKind("Normal", "Delete"),
    EventReason.ORPHAN_REMOVED: ReasonKind("Normal", "Delete"),
    EventReason.INGRESS_WITHHELD: ReasonKind("Warning", "WithholdIngress"),
    EventReason.INGRESS_RESTORED: ReasonKind("Normal", "RestoreIngress"),
    EventReason.PROMOTED: ReasonKind("Normal", "Promote"),
    EventReason.ROLLOUT_STUCK: ReasonKind("Warning", "Observe"),
    EventReason.INVALID_SPEC: ReasonKind("Warning", "Validate"),
    EventReason.APPLY_FAILED: ReasonKind("Warning", "Apply"),
    EventReason.DELETE_FAILED: ReasonKind("Warning", "Delete"),
}


@dataclass(frozen=True)
class Regarding:
    """The object an Event is about: the endpoint's Deployment (uid when known)."""

    name: str
    namespace: str
    uid: str | None = None
    kind: str = "Deployment"
    api_version: str = "apps/v1"

    def reference(self) -> dict[str, str]:
        ref = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        ref["namespace"] = self.namespace
        if self.uid:
            ref["uid"] = self.uid
        return ref


# --------------------------------------------------------------------------- pure parts


def truncate_note(note: str, limit: int = NOTE_LIMIT_BYTES) -> str:
    """``note`` in at most ``limit`` UTF-8 bytes, cut on a character boundary and marked with '...'."""
    encoded = note.encode()
    if len(encoded) <= limit:
        return note
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def event_key(regarding: Regarding, reason: EventReason, note: str) -> str:
    """What makes two Events the same occurrence: the regarding object (uid aside: a Deployment re-created
    under the same name is the same endpoint), the reason and the note."""
    parts = [regarding.api_version, regarding.kind, regarding.namespace, regarding.name, reason.value, note]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def event_name(regarding: Regarding, key: str) -> str:
    """``<deployment>.<16 hex digits of the key>``: deterministic, a valid object name."""
    return f"{regarding.name[:230]}.{key[:16]}"


def micro_time(moment: float) -> str:
    """Kubernetes' MicroTime: RFC 3339 with exactly six fractional digits, UTC.

    The official client turns a created Event's body into its model and back, writing the time with
    ``datetime.isoformat()``, which drops the fraction when it is zero; the API server's MicroTime
    parser then rejects it. A whole second is therefore moved by one microsecond."""
    when = datetime.fromtimestamp(moment, UTC)
    if when.microsecond == 0:
        when += timedelta(microseconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(
    regarding: Regarding, reason: EventReason, note: str, name: str, instance: str, now: float
) -> dict[str, Any]:
    """A new ``events.k8s.io/v1`` Event."""
    kind = REASONS[reason]
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": regarding.namespace},
        "eventTime": micro_time(now),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance[:INSTANCE_LIMIT],
        "action": kind.action,
        "reason": reason.value,
        "regarding": regarding.reference(),
        "note": note,
        "type": kind.type,
    }


def series_patch(count: int, now: float) -> dict[str, Any]:
    """The merge patch of a repeat: the series' count (at least 2, as the API requires) and last time."""
    return {"series": {"count": max(2, count), "lastObservedTime": micro_time(now)}}


# --------------------------------------------------------------------------- the recorder


@dataclass
class _Seen:
    name: str
    count: int
    last_seen: float


class EventRecorder:
    """Records Events for one region's fleet process; thread-safe; never raises from ``record``."""

    def __init__(
        self,
        api_client: client.ApiClient,
        region: str,
        reporting_instance: str | None = None,
        window_seconds: float = 600.0,
        cache_size: int = 512,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        pacer: WritePacer | None = None,
    ) -> None:
        self.api = client.EventsV1Api(api_client)
        self.pacer = pacer  # None: Events are not paced (tests, one-off tools)
        self.region = region
        self.instance = reporting_instance or socket.gethostname()
        self.window = window_seconds
        self.cache_size = cache_size
        self.timeout = timeout_seconds
        self.clock = clock
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, regarding: Regarding, reason: EventReason, note: str) -> EventOutcome:
        """Create the Event, or count a repeat on the existing one. Returns what happened."""
        note = truncate_note(note)
        key = event_key(regarding, reason, note)
        now = self.clock()
        seen = self._recent(key, now)
        try:
            if seen is None:
                outcome, count = self._create_or_join(
                    regarding, reason, note, event_name(regarding, key), now
                )
            else:
                outcome, count = self._repeat(regarding, reason, note, seen, now)
        except Exception as exc:
            with self._lock:
                self._seen.pop(key, None)
            log.debug(
                "could not record event %s on %s/%s: %s", reason.value, regarding.kind, regarding.name, exc
            )
            outcome, count = EventOutcome.FAILED, 0
        else:
            self._remember(key, _Seen(event_name(regarding, key), count, now))
        metrics.record_event(self.region, outcome)
        return outcome

    def _recent(self, key: str, now: float) -> _Seen | None:
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen.last_seen > self.window:
                return None
            self._seen.move_to_end(key)
            return _Seen(seen.name, seen.count, seen.last_seen)

    def _remember(self, key: str, seen: _Seen) -> None:
        with self._lock:
            self._seen[key] = seen
            self._seen.move_to_end(key)
            while len(self._seen) > self.cache_size:
                self._seen.popitem(last=False)

    def _create_or_join(
        self, regarding: Regarding, reason: EventReason, note: str, name: str, now: float
    ) -> tuple[EventOutcome, int]:
        body = event_body(regarding, reason, note, name, self.instance, now)
        try:
            self._request("create", self.api.create_namespaced_event, regarding.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = self._request("patch", self._patch, name, regarding.namespace, {})
            count = _series_count(existing) + 1
            self._request("patch", self._patch, name, regarding.namespace, series_patch(count, now))
            return EventOutcome.PATCHED, count
        return EventOutcome.CREATED, 1

    def _repeat(
        self, regarding: Regarding, reason: EventReason, note: str, seen: _Seen, now: float
    ) -> tuple[EventOutcome, int]:
        count = seen.count + 1
        try:
            self._request("patch", self._patch, seen.name, regarding.namespace, series_patch(count, now))
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create_or_join(regarding, reason, note, seen.name, now)
        return EventOutcome.PATCHED, count

    def _patch(self, name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return self.api.patch_namespaced_event(name, namespace, body, _content_type=MERGE_PATCH, **kwargs)

    def _request(self, verb: str, call: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """One API request, counted in ``gco_kube_requests_total``; the answer as JSON. Every one is a
        write, so it first takes a slot of the region's write budget (``pacer``) as the gateway's do."""
        error: BaseException | None = None
        status: int | None = None
        if self.pacer is not None:
            self.pacer.acquire()
        try:
            response = call(*args, _preload_content=False, _request_timeout=self.timeout)
            status = int(response.status)
            body = response.data
            return dict(json.loads(body)) if body else {}
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics.observe_kube_request(verb, "events", metric_labels.kube_code(error, status), self.region)


def _series_count(event: Mapping[str, Any]) -> int:
    series = event.get("series")
    if isinstance(series, Mapping) and isinstance(series.get("count"), int):
        return int(series["count"])
    return 1
