"""The pure core: plan by hash, status rules, promotion, purge and watchdog decisions."""

from __future__ import annotations

from typing import Any

from gco_tasks.core.conventions import HASH_ANNOTATION
from gco_tasks.core.plan import (
    ObservedObject,
    endpoint_name_of,
    objects_by_endpoint,
    plan_changes,
    without_ingress,
)
from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.status import Outcome, is_purgeable, should_promote, status_report


def record(**overrides: Any) -> Endpoint:
    item: dict[str, Any] = {
        "endpoint_name": "demo",
        "desired_state": "running",
        "target_regions": ["us-east-1"],
        "namespace": "gco-inference",
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "replicas": 2},
        "created_at": "2026-11-01T00:00:00+00:00",
        "updated_at": "2026-11-01T00:00:00+00:00",
        "region_status": {},
    }
    item.update(overrides)
    return Endpoint.from_item(item)


def live(objects: list[dict[str, Any]], ready: int = 0) -> list[ObservedObject]:
    """Digests of objects as the API server would hold them after an apply."""
    digests = []
    for obj in objects:
        full = {**obj, "status": {"readyReplicas": ready, "updatedReplicas": ready, "observedGeneration": 1}}
        full["metadata"] = {**obj["metadata"], "generation": 1}
        digests.append(ObservedObject.from_object(full))
    return digests


def test_nothing_observed_applies_everything_in_order() -> None:
    desired = render_endpoint(record(), "us-east-1", RenderOptions())
    plan = plan_changes(desired, [])
    kinds = [obj["kind"] for obj in plan.apply]
    assert kinds == ["Deployment", "Service", "Ingress"]
    assert not plan.delete


def test_in_sync_endpoint_plans_nothing() -> None:
    desired = render_endpoint(record(), "us-east-1", RenderOptions())
    assert plan_changes(desired, live(desired, ready=2)).is_empty


def test_any_spec_change_reaches_the_plan() -> None:
    before = render_endpoint(record(), "us-east-1", RenderOptions())
    changed_spec = {"image": "vllm/vllm-openai:v0.6.3", "replicas": 2, "env": {"LOG_LEVEL": "debug"}}
    after = render_endpoint(record(spec=changed_spec), "us-east-1", RenderOptions())
    plan = plan_changes(after, live(before, ready=2))
    assert [obj["kind"] for obj in plan.apply] == ["Deployment"]


def test_canary_removed_deletes_canary_objects_and_reapplies_ingress() -> None:
    spec = {"image": "vllm/vllm-openai:v0.6.3", "canary": {"image": "vllm/vllm-openai:v0.7.0", "weight": 20}}
    with_canary = render_endpoint(record(spec=spec), "us-east-1", RenderOptions())
    without = render_endpoint(record(spec={"image": "vllm/vllm-openai:v0.6.3"}), "us-east-1", RenderOptions())
    plan = plan_changes(without, live(with_canary, ready=1))
    assert ("Deployment", "demo-canary") in plan.delete and ("Service", "demo-canary") in plan.delete
    assert [obj["kind"] for obj in plan.apply] == ["Ingress"]
    assert plan.delete.index(("Service", "demo-canary")) < plan.delete.index(("Deployment", "demo-canary"))


def test_deleted_endpoint_deletes_everything_traffic_first() -> None:
    desired = render_endpoint(record(), "us-east-1", RenderOptions())
    plan = plan_changes([], live(desired))
    assert plan.delete[0] == ("Ingress", "inference-demo")
    assert plan.delete[-1] == ("Deployment", "demo")


def test_objects_are_attributed_by_label_then_by_gco_app_label() -> None:
    ours = {"metadata": {"name": "x", "labels": {"gco.io/endpoint": "x", "app": "x"}}}
    gco_canary = {"metadata": {"name": "y-canary", "labels": {"app": "y-canary", "gco.io/type": "inference"}}}
    unknown = {"metadata": {"name": "z", "labels": {"gco.io/type": "inference"}}}
    assert endpoint_name_of(ours, set()) == "x"
    assert endpoint_name_of(gco_canary, {"y"}) == "y"
    assert endpoint_name_of(gco_canary, set()) == "y-canary"
    assert endpoint_name_of(unknown, {"z"}) is None
    grouped = objects_by_endpoint([{**gco_canary, "kind": "Deployment"}], {"y"})
    assert ObservedObject.from_object(grouped["y"][0]).canary


def outcome(**overrides: Any) -> Outcome:
    values: dict[str, Any] = {
        "desired_state": "running",
        "targeted": True,
        "spec_replicas": 2,
        "autoscaling_min": None,
        "primary_before": None,
        "primary_applied": True,
    }
    values.update(overrides)
    return Outcome(**values)


def deployment(
    ready: int, replicas: int | None = 2, generation: int = 1, observed: int = 1
) -> ObservedObject:
    return ObservedObject(
        kind="Deployment",
        name="demo",
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=ready,
        generation=generation,
        observed_generation=observed,
    )


def test_status_rules() -> None:
    assert status_report(outcome()).state == "creating"  # type: ignore[union-attr]
    assert status_report(outcome(primary_before=deployment(2)))  # applied this cycle
    assert status_report(outcome(primary_before=deployment(2))).state == "updating"  # type: ignore[union-attr]
    running = status_report(outcome(primary_before=deployment(2), primary_applied=False))
    assert running is not None and (running.state, running.replicas_ready, running.replicas_desired) == (
        "running",
        2,
        2,
    )
    partly = status_report(outcome(primary_before=deployment(1), primary_applied=False))
    assert partly is not None and partly.state == "updating"
    rolling = status_report(outcome(primary_before=deployment(2, generation=2), primary_applied=False))
    assert rolling is not None and rolling.state == "updating"
    assert status_report(outcome(desired_state="stopped")).state == "stopped"  # type: ignore[union-attr]
    assert status_report(outcome(desired_state="deleted", targeted=False)).state == "deleted"  # type: ignore[union-attr]
    assert status_report(outcome(targeted=False)) is None
    failed = status_report(outcome(error="422 Invalid"))
    assert failed is not None and failed.state == "error" and failed.error == "422 Invalid"


def test_autoscaled_desired_replicas_follow_the_hpa() -> None:
    report = status_report(
        outcome(autoscaling_min=1, primary_before=deployment(3, replicas=3), primary_applied=False)
    )
    assert report is not None and report.replicas_desired == 3 and report.state == "running"


def test_promotion_needs_every_target_region_running() -> None:
    assert should_promote("deploying", ["a", "b"], {"a": "running", "b": "running", "c": "error"})
    assert not should_promote("deploying", ["a", "b"], {"a": "running"})
    assert not should_promote("deploying", ["a", "b"], {"a": "running", "b": "creating"})
    assert not should_promote("running", ["a"], {"a": "running"})
    assert not should_promote("deploying", [], {})


def test_purge_needs_every_target_region_deleted() -> None:
    assert is_purgeable("deleted", ["a", "b"], {"a": "deleted", "b": "deleted"})
    assert not is_purgeable("deleted", ["a", "b"], {"a": "deleted"})
    assert not is_purgeable("running", ["a"], {"a": "deleted"})


def test_without_ingress() -> None:
    desired = render_endpoint(record(), "us-east-1", RenderOptions())
    assert {obj["kind"] for obj in without_ingress(desired)} == {"Deployment", "Service"}
    assert all(HASH_ANNOTATION in obj["metadata"]["annotations"] for obj in desired)
