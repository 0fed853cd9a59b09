"""The hint a reconcile message carries besides the name: never a decision, never the record.

Where it stands in the flow: ``fanout`` builds a ``Hint`` per message; the sender sends ``as_message()``
as the task's ``hint`` argument; the task parses it once (``parse_hint``) and hands the ``Hint`` to
``telemetry`` and ``reconciler`` (whose ``observe`` step decides what it may be trusted for).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from gco_tasks.core.plan import ObservedObject

log = logging.getLogger(__name__)

#: A hint taken up to this far in the future (another host's clock) still counts as fresh.
CLOCK_SKEW_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Hint:
    """What a reconcile message may carry besides the name: when the fan-out looked, the record's
    ``updated_at`` then, why it sent the message, and the digests of the live objects."""

    taken_at: float
    observed: tuple[ObservedObject, ...] = ()
    updated_at: str | None = None
    reason: str | None = None
    shadowed_by: str | None = None  # the older endpoint whose path this one's shadows (the Scan's verdict)

    def is_fresh(self, now: float, max_age_seconds: float) -> bool:
        """Taken at most ``max_age_seconds`` ago and not in the future (beyond a little clock skew): a
        future-dated hint is treated as stale, so it buys nothing."""
        return now - max_age_seconds <= self.taken_at <= now + CLOCK_SKEW_SECONDS

    def object_uids(self) -> dict[str, str | None]:
        """ "Kind/name" -> uid of the objects the hint describes."""
        return {f"{o.kind}/{o.name}": o.uid for o in self.observed}

    def as_message(self) -> dict[str, Any]:
        """The message's ``hint`` argument (JSON)."""
        message: dict[str, Any] = {
            "taken_at": self.taken_at,
            "observed": [o.model_dump(exclude_defaults=True) for o in self.observed],
        }
        if self.updated_at is not None:
            message["updated_at"] = self.updated_at
        if self.reason is not None:
            message["reason"] = str(self.reason)
        if self.shadowed_by is not None:
            message["shadowed_by"] = self.shadowed_by
        return message


def parse_hint(message: Mapping[str, Any] | None) -> Hint | None:
    """The hint of a reconcile message, or None when there is none or it does not parse (then the
    reconcile reads everything itself). Anything else a message carries (an ``item``, a spec: older or
    forged messages) is ignored: the record is always read from the table."""
    if not isinstance(message, Mapping) or "taken_at" not in message:
        return None
    try:
        observed = tuple(ObservedObject.model_validate(o) for o in message.get("observed") or [])
        texts = {key: message.get(key) for key in ("updated_at", "reason", "shadowed_by")}
        return Hint(
            taken_at=float(message["taken_at"]),
            observed=observed,
            **{key: str(value) for key, value in texts.items() if value is not None},
        )
    except (ValidationError, TypeError, ValueError):
        log.warning("ignoring a reconcile hint that does not parse")
        return None
