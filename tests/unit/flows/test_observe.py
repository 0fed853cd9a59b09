"""What a reconcile trusts of a message's hint (``gco_tasks.flows.observe``), counted in GETs against a fake
cluster: nothing that decides (the record, deletes, the primary's readiness) is taken on trust, and a
fresh hint of an endpoint in sync costs one GET."""

from __future__ import annotations

import copy
from typing import Any

from gco_tasks.core.drift import digests
from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.core.ownership import is_ours
from gco_tasks.core.plan import ObservedObject, Plan, plan_changes
from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.flows.observe import candidate_keys, observe

REGION = "us-east-1"


class FakeCluster:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        self.gets: list[tuple[str, str]] = []

    def get_object(self, kind: str, name: str) -> dict[str, Any] | None:
        self.gets.append((kind, name))
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None


def rendered(**spec: Any) -> list[dict[str, Any]]:
    item = {"endpoint_name": "demo", "target_regions": [REGION], "spec": {"image": "nginx:1.27", **spec}}
    return render_endpoint(Endpoint.from_item(item), REGION, RenderOptions())


def planner(desired: list[dict[str, Any]]) -> Any:
    def plan(observed: list[ObservedObject]) -> Plan:
        return plan_changes(desired, observed)

    return plan


def test_a_hint_never_carries_the_record_and_junk_is_ignored() -> None:
    hint = parse_hint({"taken_at": 5, "item": {"spec": {"image": "evil"}}, "observed": [], "reason": "drift"})
    assert hint == Hint(taken_at=5.0, reason="drift")
    assert parse_hint({"item": {}}) is None and parse_hint(None) is None
    assert parse_hint({"taken_at": "soon"}) is None
    assert parse_hint({"taken_at": 1, "observed": [{"kind": "Deployment"}]}) is None


def test_fresh_means_recent_and_never_the_future() -> None:
    hint = Hint(taken_at=100.0)
    assert hint.is_fresh(now=110.0, max_age_seconds=15)
    assert not hint.is_fresh(now=116.0, max_age_seconds=15)
    assert hint.is_fresh(now=96.0, max_age_seconds=15)  # a little clock skew
    assert not Hint(taken_at=100.0 + 3600).is_fresh(now=100.0, max_age_seconds=15)


def test_without_a_hint_every_object_it_can_have_is_read_by_name() -> None:
    desired = rendered()
    cluster = FakeCluster(desired)
    observed = observe(cluster, "demo", desired, None, False, planner(desired))
    assert cluster.gets == candidate_keys("demo") and len(cluster.gets) == 6
    assert [o.key for o in observed] == [
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("Ingress", "inference-demo"),
    ]


def test_a_fresh_hint_of_objects_in_sync_costs_one_get_for_the_primary() -> None:
    desired = rendered()
    cluster = FakeCluster(desired)
    hint = Hint(taken_at=100.0, observed=tuple(digests(desired, desired)))
    observe(cluster, "demo", desired, hint, True, planner(desired))
    assert cluster.gets == [("Deployment", "demo")]


def test_a_stale_hint_rereads_what_it_calls_in_sync_and_applies_the_rest_without_a_read() -> None:
    desired = rendered()
    cluster = FakeCluster(desired)
    in_sync = digests(desired[:2], desired)  # the Ingress: "missing", applied anyway
    observe(cluster, "demo", desired, Hint(taken_at=1.0, observed=tuple(in_sync)), False, planner(desired))
    assert sorted(cluster.gets) == [("Deployment", "demo"), ("Service", "demo")]


def test_forged_digests_cannot_delete_what_is_not_the_endpoints() -> None:
    desired = rendered()
    theirs = {"kind": "Service", "metadata": {"name": "demo-canary", "labels": {"team": "x"}}}
    cluster = FakeCluster([*desired, theirs])
    forged = (
        *digests(desired, desired),
        ObservedObject(kind="Service", name="demo-canary"),
        ObservedObject(kind="Deployment", name="coredns"),
    )
    observed = observe(cluster, "demo", desired, Hint(taken_at=1.0, observed=forged), True, planner(desired))
    assert ("Service", "demo-canary") in cluster.gets and ("Deployment", "coredns") not in cluster.gets
    assert plan_changes(desired, observed).delete == ()
    assert not is_ours(theirs, "demo")


def test_a_forged_readiness_is_replaced_by_what_the_server_says() -> None:
    desired = rendered()
    served = copy.deepcopy(desired)
    served[0]["status"] = {"readyReplicas": 1}
    forged = ObservedObject.model_validate(
        {**digests(desired, desired)[0].model_dump(), "ready_replicas": 99}
    )
    observed = observe(
        FakeCluster(served), "demo", desired, Hint(taken_at=1.0, observed=(forged,)), True, planner(desired)
    )
    primary = next(o for o in observed if o.key == ("Deployment", "demo"))
    assert primary.ready_replicas == 1
