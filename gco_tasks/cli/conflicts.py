"""When a CLI write loses its condition: the fleet's own write (a status report, the promotion of
``deploying`` to ``running``) is retried over, another user's change to the same intent is not.

Where it stands in the flow: outside the fleet, between the operator's verb and the table's conditional
write (``cli.endpoints``). Pure: the records read before and after in, a decision or a sentence out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gco_tasks.core.records import DEPLOYING, RUNNING

#: Desired-state changes only the fleet makes: a region's promotion once every region runs.
FLEET_TRANSITIONS: Final = frozenset({(DEPLOYING, RUNNING)})
#: How often a verb re-reads and re-applies its intent after losing to the fleet's writes.
STATE_ATTEMPTS: Final = 8


def state_decision(wanted: str, read: str, now: str | None) -> str | None:
    """After ``desired_state: read -> wanted`` lost its condition and the record now reads ``now`` (None:
    removed): ``"done"`` (someone already made it ``wanted``), ``"retry"`` (the fleet's promotion:
    re-apply the intent on the new state), or None (another user changed it: say so)."""
    if now == wanted:
        return "done"
    if now is not None and (read, now) in FLEET_TRANSITIONS:
        return "retry"
    return None


def state_conflict_message(name: str, wanted: str, read: str, now: Mapping[str, Any] | None) -> str:
    """The sentence for a desired state another user changed (or a record removed) meanwhile."""
    if now is None:
        return f"endpoint {name!r} was removed while making it {wanted} (it was {read}); nothing written"
    when = f" at {now['updated_at']}" if now.get("updated_at") else ""
    return (
        f"endpoint {name!r} was changed by someone else while making it {wanted}: desired_state "
        f"{read} -> {now.get('desired_state')}{when}; nothing written. Check `gco-tasks endpoints status "
        f"{name}` and run the command again if it still applies"
    )


def spec_overlap(first: Mapping[str, Any], now: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The spec fields another writer changed since ``first`` was read that this edit changes too, as
    ``spec.FIELD: OLD -> NEW`` (values of ``env`` never shown)."""
    ours = {key for key in first.keys() | wanted.keys() if first.get(key) != wanted.get(key)}
    theirs = {key for key in first.keys() | now.keys() if first.get(key) != now.get(key)}
    return [
        f"spec.{key}: {_shown(key, first.get(key))} -> {_shown(key, now.get(key))}"
        for key in sorted(ours & theirs)
    ]


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "(unset)"
    if key == "env":
        return "(env changed)"
    return repr(value)
