"""The pure rules around the lifecycle: the replicas handover, objects being deleted, what is not ours,
paths that shadow each other on the shared load balancer, and untrusted names and items."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gco_tasks.core.conventions import FIELD_MANAGER, HANDOVER_MANAGER
from gco_tasks.core.hpa_handover import (
    handover_candidates,
    hpa_deletions_first,
    owns_replicas,
    replicas_handover,
)
from gco_tasks.core.intake import bounded, name_problem, travels_as_json
from gco_tasks.core.ownership import claim_problem, creations
from gco_tasks.core.paths import (
    collide,
    first_seen_changes,
    record_paths,
    segments,
    serving_since,
    shadowed_paths,
    shadowing_message,
)
from gco_tasks.core.plan import ObservedObject, Plan
from gco_tasks.core.records import Endpoint, InvalidEndpointError, RecordHeader
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.status import StatusReport, promotion_due, target_states
from gco_tasks.core.teardown import plan_around_terminating, waiting_note
from gco_tasks.flows.purge import purgeable

REGION = "us-east-1"


def record(name: str = "demo", **spec: Any) -> Endpoint:
    return Endpoint.from_item(
        {
            "endpoint_name": name,
            "desired_state": "running",
            "target_regions": [REGION],
            "spec": {"image": "vllm/vllm-openai:v0.6.3", **spec},
        }
    )


def rendered(name: str = "demo", **spec: Any) -> list[dict[str, Any]]:
    return render_endpoint(record(name, **spec), REGION, RenderOptions())


def digest(obj: dict[str, Any], deleting: bool = False) -> ObservedObject:
    metadata = {**obj["metadata"], **({"deletionTimestamp": "2026-11-29T21:53:11Z"} if deleting else {})}
    return ObservedObject.from_object({**obj, "metadata": metadata})


# --------------------------------------------------------------------------- handover


def managed(manager: str, operation: str = "Apply", replicas: bool = True, subresource: str = "") -> Any:
    spec: dict[str, Any] = {"f:template": {}}
    if replicas:
        spec["f:replicas"] = {}
    entry = {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": spec}}
    return {**entry, "subresource": subresource} if subresource else entry


def live_deployment(*entries: Any, replicas: int = 3) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "demo",
            "namespace": "gco-inference",
            "resourceVersion": "42",
            "managedFields": list(entries),
        },
        "spec": {"replicas": replicas},
    }


def test_the_handover_keeps_the_current_count_under_a_private_manager_and_the_read_version() -> None:
    ours = live_deployment(
        managed(FIELD_MANAGER), managed("kube-controller-manager", "Update", False, "status")
    )
    assert owns_replicas(ours)
    assert replicas_handover(ours) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo", "namespace": "gco-inference", "resourceVersion": "42"},
        "spec": {"replicas": 3},
    }


def test_no_handover_once_the_hpa_or_the_handover_owns_the_count() -> None:
    hpa = live_deployment(
        managed(FIELD_MANAGER, replicas=False), managed("kube-controller-manager", "Update", True, "scale")
    )
    handed = live_deployment(managed(FIELD_MANAGER, replicas=False), managed(HANDOVER_MANAGER))
    assert replicas_handover(hpa) is None and replicas_handover(handed) is None
    assert replicas_handover(None) is None
    stopped = live_deployment(managed(FIELD_MANAGER), replicas=0)  # start after stop: the HPA takes over
    assert replicas_handover(stopped) is None
    assert not owns_replicas(live_deployment(managed(FIELD_MANAGER, "Update")))  # only an apply counts


def test_only_an_existing_deployment_applied_without_replicas_is_a_candidate() -> None:
    autoscaled = rendered(autoscaling={"enabled": True, "min_replicas": 2, "max_replicas": 5})
    plain = rendered(replicas=3)
    plan = Plan(apply=tuple(autoscaled))
    assert handover_candidates(plan, [digest(o) for o in plain]) == ["demo"]
    assert handover_candidates(plan, []) == []  # a new Deployment: nothing to keep
    assert handover_candidates(Plan(apply=tuple(plain)), [digest(o) for o in plain]) == []
    terminating = [digest(o, deleting=True) for o in plain]
    assert handover_candidates(plan, terminating) == []


def test_an_hpa_no_longer_wanted_goes_before_the_deployment_takes_replicas_back() -> None:
    plain = rendered(replicas=4)
    plan = Plan(apply=tuple(plain), delete=(("HorizontalPodAutoscaler", "demo"), ("Service", "old")))
    first, rest = hpa_deletions_first(plan)
    assert first == Plan(delete=(("HorizontalPodAutoscaler", "demo"),))
    assert rest == Plan(apply=tuple(plain), delete=(("Service", "old"),))
    deletes_only = Plan(delete=(("Ingress", "inference-demo"), ("HorizontalPodAutoscaler", "demo")))
    assert hpa_deletions_first(deletes_only) == (Plan(), deletes_only)  # traffic first, as always


# --------------------------------------------------------------------------- objects being deleted


def test_an_object_being_deleted_is_not_deleted_again_nor_applied_onto() -> None:
    objects = rendered(canary={"image": "vllm/vllm-openai:v0.7.0"})
    observed = [digest(o, deleting=o["metadata"]["name"].endswith("-canary")) for o in objects]
    without_canary = rendered()
    plan, waiting = plan_around_terminating(without_canary, observed)
    # The canary was deleted once: no second DELETE; only the Ingress changes (no weighted routing).
    assert [o["kind"] for o in plan.apply] == ["Ingress"] and plan.delete == () and waiting == ()
    plan, waiting = plan_around_terminating(objects, observed)
    assert plan.is_empty and waiting == ("Deployment/demo-canary", "Service/demo-canary")
    assert waiting_note(waiting) == (
        "waiting for Deployment/demo-canary, Service/demo-canary to finish deleting",
    )
    gone, _ = plan_around_terminating([], [digest(o) for o in without_canary])
    assert [key[0] for key in gone.delete] == ["Ingress", "Service", "Deployment"]


def test_purge_waits_for_deleted_everywhere_and_no_region_still_deleting() -> None:
    item = {
        "endpoint_name": "demo",
        "desired_state": "deleted",
        "target_regions": [REGION],
        "region_status": {REGION: {"state": "deleted"}, "eu-west-1": {"state": "deleting"}},
    }
    assert purgeable(item) is None
    item["region_status"]["eu-west-1"] = {"state": "deleted"}
    assert purgeable(item) is not None
    item["region_status"][REGION] = {"state": "deleting"}
    assert purgeable(item) is None


def test_promotion_counts_only_reports_about_the_record_as_it_is_now() -> None:
    item = {
        "endpoint_name": "demo",
        "desired_state": "deploying",
        "target_regions": [REGION, "eu-west-1"],
        "updated_at": "2026-11-02T00:00:00+00:00",
        "region_status": {
            "eu-west-1": {"state": "running", "observed_updated_at": "2026-11-01T00:00:00+00:00"}
        },
    }
    header = RecordHeader.from_item(item)
    assert target_states(header) == {REGION: "", "eu-west-1": ""}  # about the spec before the edit
    assert not promotion_due(header, REGION, StatusReport("running", 1, 1))
    item["region_status"]["eu-west-1"]["observed_updated_at"] = item["updated_at"]
    assert promotion_due(RecordHeader.from_item(item), REGION, StatusReport("running", 1, 1))
    del item["region_status"]["eu-west-1"]["observed_updated_at"]  # GCO's monitor: taken as is
    assert promotion_due(RecordHeader.from_item(item), REGION, StatusReport("running", 1, 1))


# --------------------------------------------------------------------------- what is not ours


def test_an_object_of_our_name_without_our_labels_is_refused_naming_its_writers() -> None:
    foreign = {
        "kind": "Deployment",
        "metadata": {
            "name": "demo",
            "namespace": "gco-inference",
            "labels": {"app": "demo"},
            "managedFields": [{"manager": "kubectl-create", "operation": "Update"}],
        },
    }
    problem = claim_problem(foreign, "demo")
    assert problem is not None
    assert problem.startswith("Deployment/demo already exists in namespace gco-inference and is not this")
    assert "gco.io/type=inference, gco.io/endpoint=demo, written by kubectl-create" in problem
    ours = rendered()[0]
    assert claim_problem(ours, "demo") is None and claim_problem(None, "demo") is None
    gcos = {
        **foreign,
        "metadata": {**foreign["metadata"], "labels": {"app": "demo", "gco.io/type": "inference"}},
    }
    assert claim_problem(gcos, "demo") is None  # GCO's monitor made it: adopted
    assert claim_problem(ours, "other") is not None  # another endpoint's


def test_only_objects_absent_from_the_cycle_are_looked_at_before_creating() -> None:
    objects = rendered()
    plan = Plan(apply=tuple(objects))
    assert creations(plan, [digest(objects[0])]) == [("Service", "demo"), ("Ingress", "inference-demo")]


# --------------------------------------------------------------------------- paths


def entry(
    name: str, path: str | None = None, created: str = "2026-11-01T00:00:00+00:00", **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {"endpoint_name": name, "created_at": created, "desired_state": "running", **extra}
    if path is not None:
        item["ingress_path"] = path
    return item


def test_paths_collide_by_segments() -> None:
    assert segments("/inference/a/") == ("inference", "a") and segments("/") == ()
    assert collide("/inference/a", "/inference/a/")
    assert collide("/inference/a", "/inference/a/b") and collide("/inference/a/b", "/inference/a")
    assert not collide("/inference/a", "/inference/ab")
    assert collide("/", "/inference/x")


def seen(**paths_at: tuple[str, float]) -> dict[str, tuple[str, float]]:
    return dict(paths_at)


def test_the_record_first_seen_asking_keeps_the_path_then_by_name() -> None:
    older = entry("older", "/inference/shared")
    younger = entry("younger", "/inference/shared/v2")
    twin = entry("b-twin", "/inference/shared")
    apart = entry("apart", "/inference/sharedx")
    first = seen(
        older=("/inference/shared", 1.0),
        younger=("/inference/shared/v2", 2.0),
        apart=("/inference/sharedx", 0.5),
    )
    assert shadowed_paths([younger, older, apart], first) == {"younger": "older"}
    assert shadowed_paths(
        [twin, older], seen(older=("/inference/shared", 1.0), **{"b-twin": ("/inference/shared", 1.0)})
    ) == {"older": "b-twin"}  # same moment: by name
    above = entry("above", "/inference")
    assert shadowed_paths([older, above], {**first, "above": ("/inference", 3.0)}) == {"above": "older"}


def test_created_at_is_the_records_word_and_decides_nothing() -> None:
    """Issue 22, finding 4: on main ``created_at`` decided who kept a shared path, so a record backdated
    to 1970 took /inference/victim. Seniority is the fleet's first sighting of the (record, path)."""
    victim = entry("victim", created="2026-11-01T00:00:00+00:00")
    thief = entry("thief", "/inference/victim", created="1970-01-01T00:00:00+00:00")
    first = seen(victim=("/inference/victim", 100.0), thief=("/inference/victim", 200.0))
    assert shadowed_paths([thief, victim], first) == {"thief": "victim"}
    assert shadowed_paths([thief, victim], {"victim": first["victim"]}) == {
        "thief": "victim"
    }  # unseen: youngest
    # An older record that moves onto a path another already holds is first seen there when it moves.
    moved = seen(victim=("/inference/victim", 100.0), thief=("/inference/thief", 50.0))
    assert shadowed_paths([thief, victim], moved) == {"thief": "victim"}


def test_the_fan_out_notes_new_and_moved_paths_and_forgets_the_rest() -> None:
    known = {"a": ("/inference/a", 1.0), "moved": ("/inference/old", 1.0), "gone": ("/inference/gone", 1.0)}
    paths = record_paths(
        [entry("a"), entry("moved", "/inference/new"), entry("new"), entry("gone", desired_state="deleted")]
    )
    new, gone = first_seen_changes(paths, known, 9.0)
    assert new == {"moved": ("/inference/new", 9.0), "new": ("/inference/new", 9.0)} and gone == ["gone"]
    # A record whose live Ingress already routes its path (Redis was empty, or lost): first seen when the
    # API server created that Ingress, so a newcomer seen in the same cycle cannot sort before it.
    ingress = {
        "kind": "Ingress",
        "metadata": {"creationTimestamp": "1970-01-01T00:00:05Z"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/inference/new"}]}}]},
    }
    serving = serving_since(paths, {"new": [ingress], "a": [{**ingress, "kind": "Service"}]})
    assert serving == {"new": 5.0}
    new, _ = first_seen_changes(paths, {}, 9.0, serving)
    assert new["new"] == ("/inference/new", 5.0) and new["a"] == ("/inference/a", 9.0)


def test_defaults_deleted_records_and_unseen_records() -> None:
    by_default = entry("a")  # /inference/a
    explicit = entry("b", "/inference/a/b")
    first = seen(a=("/inference/a", 1.0), b=("/inference/a/b", 2.0))
    assert shadowed_paths([by_default, explicit], first) == {"b": "a"}
    assert shadowed_paths([{**by_default, "desired_state": "deleted"}, explicit], first) == {}
    unseen = entry("unseen", "/inference/a")
    assert shadowed_paths([unseen, by_default], first) == {"unseen": "a"}  # counts as the youngest
    odd = [{"endpoint_name": 7}, entry("c", ingress_path=["/inference/a"]), entry("d")]
    assert shadowed_paths([by_default, *odd], first) == {}  # no string name or path: holds no path
    message = shadowing_message("/inference/a/b", "a")
    assert message.startswith("ingress_path: '/inference/a/b' equals or overlaps") and "'a'" in message


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=3), min_size=1, max_size=8))
def test_kept_paths_never_collide_and_every_shadowed_one_collides_with_its_named_elder(
    paths: list[list[str]],
) -> None:
    records = [entry(f"e{i}", "/" + "/".join(parts)) for i, parts in enumerate(paths)]
    path = {r["endpoint_name"]: r["ingress_path"] for r in records}
    shadowed = shadowed_paths(records, {name: (p, float(i)) for i, (name, p) in enumerate(path.items())})
    kept = [name for name in path if name not in shadowed]
    assert kept, "the oldest record always keeps its path"
    for i, first in enumerate(kept):
        assert not any(collide(path[first], path[other]) for other in kept[i + 1 :])
    for name, elder in shadowed.items():
        assert elder in kept and collide(path[name], path[elder]) and elder < name  # e0 < e1 ...: older


# --------------------------------------------------------------------------- untrusted names and items


def test_names_that_cannot_be_selected_are_refused_with_the_endpoint_name_rule() -> None:
    assert name_problem("demo") is None
    assert name_problem("1abc") is None  # a Kubernetes name: the record's own validation refuses it
    for bad in ("Bad Name", "a" * 57, "ünïcode", "a/b", "", "x-"):
        problem = name_problem(bad)
        assert problem is not None and "endpoint_name: " in problem, bad
    assert "at most 53 characters" in (name_problem("a" * 300) or "")
    assert len(name_problem("a" * 100_000) or "") < 400


def test_items_with_sets_or_binary_do_not_travel_as_json_and_errors_stay_small() -> None:
    from boto3.dynamodb.types import Binary

    assert travels_as_json({"spec": {"replicas": 2, "env": {"A": "b"}}})
    assert not travels_as_json({"spec": {"replicas": {1, 2}}})
    assert not travels_as_json({"spec": {"image": Binary(b"\x00")}})
    assert not travels_as_json({"x": float("nan")})
    assert bounded("short") == "short" and bounded(None) is None
    cut = bounded("x" * 5000)
    assert cut is not None and cut.endswith("... (3000 more characters)") and len(cut) < 2100


def test_dynamodb_sets_in_list_fields_are_refused_by_name_and_the_header_still_finds_the_regions() -> None:
    item = {
        "endpoint_name": "demo",
        "target_regions": {REGION},
        "spec": {"image": "x:1", "args": {"--b", "--a"}},
    }
    with pytest.raises(InvalidEndpointError) as refused:
        Endpoint.from_item(item)
    assert "target_regions: must be a list; a DynamoDB set" in str(refused.value)
    assert "spec.args: must be a list; a DynamoDB set" in str(refused.value)
    assert RecordHeader.from_item(item).target_regions == [REGION]
