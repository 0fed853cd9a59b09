"""What a task's flow did: one vocabulary for the task result, the logs, the metrics and the Events.

Where it stands in the flow: the flows return these; ``worker.telemetry`` maps a ``ReconcileResult``
to ``gco_reconcile_total{result}`` through ``ReconcileResult.label`` (the one place), and the tasks hand
``as_dict()`` to Celery (the JSON keys Flower, dashboards and tests read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # hint -> plan -> results: the type only
    from gco_tasks.core.hint import Hint


class ResultKind(StrEnum):
    """How a reconcile ended. The first five are also the values of ``gco_reconcile_total{result}``."""

    APPLIED = "applied"  # something was applied (and maybe deleted)
    NOOP = "noop"  # already in sync
    DELETED = "deleted"  # objects were deleted, nothing applied
    SKIPPED_LOCKED = "skipped_locked"  # another worker holds the endpoint
    ERROR = "error"  # the API server refused an object (permanent); status says why
    INVALID = "invalid"  # the record is not valid for this fleet; status says why, nothing touched
    ORPHAN_REMOVED = "orphan_removed"  # objects of an endpoint with no record were removed


#: The values of ``gco_reconcile_total{result}`` (a closed set: ``ReconcileResult.label`` maps onto it).
RESULT_LABELS: Final = (
    ResultKind.APPLIED,
    ResultKind.NOOP,
    ResultKind.DELETED,
    ResultKind.SKIPPED_LOCKED,
    ResultKind.ERROR,
)

#: Kinds that end the Celery task as FAILED (after the error status has been written).
FAILED_KINDS: Final = frozenset({ResultKind.ERROR, ResultKind.INVALID})


def actions(applied: Iterable[str], deleted: Iterable[str]) -> list[str]:
    """``apply Kind/name`` ... then ``delete Kind/name`` ...: how results and plans are shown."""
    return [f"apply {key}" for key in applied] + [f"delete {key}" for key in deleted]


def result_kind(applied: Sequence[str], deleted: Sequence[str], error: str | None) -> ResultKind:
    if error:
        return ResultKind.ERROR
    if applied:
        return ResultKind.APPLIED
    return ResultKind.DELETED if deleted else ResultKind.NOOP


@dataclass(frozen=True)
class Requeue:
    """Run this endpoint's reconcile again after ``countdown`` seconds (a rollout is in progress), with
    ``hint`` as its hint (what this reconcile left, in sync)."""

    countdown: float
    hint: Hint


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile did: the one object the task, logs, metrics and Events read."""

    endpoint: str
    kind: ResultKind
    applied: tuple[str, ...] = ()  # "Kind/name", in apply order
    deleted: tuple[str, ...] = ()  # "Kind/name", in delete order
    state: str | None = None  # the region state reported ("orphan-removed" for an orphan cleanup)
    error: str | None = None
    skipped: str | None = None  # why nothing was attempted
    requeue: Requeue | None = None  # a rollout in progress: look again soon (the task sends it)

    @property
    def actions(self) -> list[str]:
        return actions(self.applied, self.deleted)

    @property
    def failed(self) -> bool:
        """A permanent failure: the task ends FAILED, without retry. (A transient failure is never a
        result: it is raised as a ``TransientError`` and the task retries the whole reconcile.)"""
        return self.kind in FAILED_KINDS

    @property
    def label(self) -> ResultKind:
        """``gco_reconcile_total{result}``: skipped on the lock, else failed (``error``), else applied
        something, else only deleted, else ``noop``."""
        if self.kind is ResultKind.SKIPPED_LOCKED:
            return ResultKind.SKIPPED_LOCKED
        if self.failed:
            return ResultKind.ERROR
        if self.applied:
            return ResultKind.APPLIED
        return ResultKind.DELETED if self.deleted else ResultKind.NOOP

    def as_dict(self) -> dict[str, Any]:
        """The task's JSON result: ``endpoint``, ``actions``, ``state``, ``result`` (the kind), and
        ``error`` / ``skipped`` when set."""
        result: dict[str, Any] = {
            "endpoint": self.endpoint,
            "actions": self.actions,
            "state": self.state,
            "result": self.kind.value,
        }
        if self.error:
            result["error"] = self.error
        if self.skipped:
            result["skipped"] = self.skipped
        if self.requeue is not None:
            result["requeue_in"] = round(self.requeue.countdown, 3)
        return result


class TriageReason(StrEnum):
    """Why the fan-out sends an endpoint a reconcile (``triage``): the hint's ``reason`` and the fan-out's
    log line count these strings."""

    CHANGE = "change"  # the record changed, or an object is missing
    ADOPT = "adopt"  # GCO's monitor still co-owns an object
    DRIFT = "drift"  # a field we set was edited by hand
    DELETE = "delete"  # an object is no longer wanted
    ORPHAN = "orphan"  # objects of an endpoint with no record
    WATCHDOG_RELEASE = "watchdog-release"  # the watchdog's withholding ends
    STATUS_ENTRY = "status-entry"  # the region's status entry must go
    STATUS = "status"  # the status the region would report changed
    ROLLOUT = "rollout"  # a rollout is in progress
    HEARTBEAT = "heartbeat"  # the status write is overdue
    RESYNC = "resync"  # the endpoint's resync slot


@dataclass(frozen=True)
class FanOutResult:
    """One fan-out: records scanned, messages sent, those already pending, endpoints in sync, the
    reasons of those sent, and endpoints with objects but no record; or why it was skipped."""

    records: int = 0
    sent: int = 0
    already_pending: int = 0
    in_sync: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)
    skipped: str | None = None
    held_by_backoff: int = 0  # rollouts not yet due for another look (their backoff says when)
    #: Where the time went: scan, list, triage, publish (wall) and own_cpu (``fanout.fan_out``).
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        found: dict[str, Any] = {
            "records": self.records,
            "sent": self.sent,
            "already_pending": self.already_pending,
            "in_sync": self.in_sync,
            "reasons": dict(self.reasons),
            "orphans": list(self.orphans),
        }
        if self.held_by_backoff:
            found["held_by_backoff"] = self.held_by_backoff
        if self.seconds:  # measured by the fan-out (bench.scale reads it from the task's result)
            found["seconds"] = dict(self.seconds)
        return found


@dataclass(frozen=True)
class WatchdogResult:
    """One watchdog pass: endpoints with a running unready clock, those whose Ingress it withheld now,
    and those that recovered (reconciled at once)."""

    unready: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "unready": list(self.unready),
            "withheld": list(self.withheld),
            "recovered": list(self.recovered),
        }


@dataclass(frozen=True)
class PurgeResult:
    """One purge: the records removed."""

    purged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"purged": list(self.purged)}


@dataclass(frozen=True)
class StreamPollResult:
    """One read of the table's stream: changes read, reconciles sent, those already pending; or why it
    was skipped."""

    changes: int = 0
    sent: int = 0
    already_pending: int = 0
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {"changes": self.changes, "sent": self.sent, "already_pending": self.already_pending}
