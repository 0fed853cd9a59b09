"""Nothing lost, counted: the one check every chaos scenario ends with.

After the fault is gone and the fleet had time to recover, for the region under test:

1. every endpoint in the table is either **converged** (its live objects are exactly what its record
   renders to, and ``region_status.<region>.state`` is what its desired state calls for: ``running``,
   ``stopped`` or ``deleted``) or in ``error`` **with a reason**;
2. **no object exists that no record asks for** (every object with our labels belongs to a record whose
   rendering contains it);
3. **no record was deleted that was not fully deleted**: every endpoint the scenario created is still in
   the table, unless the scenario asked for its deletion, and then none of its objects are left.

``problems`` returns what is wrong (empty: nothing lost); scenarios wait for it to be empty within a
deadline (``assert_nothing_lost``), so a fleet that converges late fails with the list, not a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gco_tasks.adapters.cluster import ClusterGateway
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import Settings
from gco_tasks.core.conventions import MANAGED_SELECTOR
from gco_tasks.core.plan import ObservedObject, group_by_endpoint, plan_changes
from gco_tasks.core.records import Endpoint, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, desired_objects

from .harness import wait_until

#: The region state each desired state converges to.
EXPECTED_STATE = {"running": "running", "deploying": "running", "stopped": "stopped", "deleted": "deleted"}


def problems(
    store: EndpointStore, cluster: ClusterGateway, settings: Settings, intents: Mapping[str, str]
) -> list[str]:
    """Everything lost or not converged; ``intents`` maps each endpoint the scenario created to the last
    desired state it asked for (``running``, ``stopped`` or ``deleted``)."""
    items = {str(item["endpoint_name"]): item for item in store.scan_items()}
    objects = cluster.list_objects(MANAGED_SELECTOR)
    grouped = group_by_endpoint(objects, set(items) | set(intents))
    found: list[str] = []
    for name, intent in sorted(intents.items()):
        item = items.get(name)
        observed = grouped.get(name, [])
        if item is None:
            if intent != "deleted":
                found.append(f"{name}: record gone although it was never deleted")
            elif observed:
                found.append(f"{name}: record purged but objects remain: {_keys(observed)}")
            continue
        found += record_problems(name, item, observed, settings)
    for name in sorted(set(grouped) - set(items)):
        found.append(f"{name}: objects without a record: {_keys(grouped[name])}")
    for name in sorted(set(items) - set(intents)):
        found.append(f"{name}: a record the scenario never wrote")
    return found


def record_problems(
    name: str, item: Mapping[str, Any], observed: list[ObservedObject], settings: Settings
) -> list[str]:
    """What keeps one record from being converged (or in error with a reason)."""
    status = (item.get("region_status") or {}).get(settings.region) or {}
    state, error = status.get("state"), status.get("error")
    if state == "error":
        return [] if error else [f"{name}: state error without a reason"]
    try:
        desired = desired_objects(
            Endpoint.from_item(dict(item)), settings.region, RenderOptions.from_settings(settings)
        )
    except InvalidEndpointError as exc:
        return [f"{name}: invalid record ({exc}) not reported as error (state {state!r})"]
    plan = plan_changes(desired, observed)
    found = [f"{name}: not converged: {', '.join(plan.describe())}"] if not plan.is_empty else []
    expected = EXPECTED_STATE.get(str(item.get("desired_state")))
    if state != expected:
        found.append(f"{name}: region state {state!r}, expected {expected!r} (status lost or stale?)")
    return found


def assert_nothing_lost(
    store: EndpointStore,
    cluster: ClusterGateway,
    settings: Settings,
    intents: Mapping[str, str],
    timeout: float = 30.0,
    logs: str = "",
) -> float:
    """Wait (within ``timeout``) until ``problems`` is empty; the seconds it took. Fails with the list."""
    last: list[str] = []

    def clean() -> bool:
        last[:] = problems(store, cluster, settings, intents)
        return not last

    try:
        return wait_until(clean, timeout, "nothing lost", pause=0.25)
    except AssertionError:
        raise AssertionError("something lost or not converged:\n" + "\n".join(last) + "\n" + logs) from None


def _keys(observed: list[ObservedObject]) -> list[str]:
    return sorted(f"{o.kind}/{o.name}" for o in observed)
