"""Issue 22, finding 2: one record could freeze the shared ALB for every endpoint. ``ingress_path``
``/inference/*`` was accepted and rendered as a Prefix path, which the AWS Load Balancer Controller
refuses (and one Ingress it cannot build blocks its whole IngressGroup). Every value we render for the
ALB (rule paths, ``healthcheck-path``, the interval, the canary's forward action) is now held to the
controller's and AWS's limits, and a record that breaks one is refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gco_tasks.core import conventions as names
from gco_tasks.core.records import Endpoint, InvalidEndpointError, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from gco_tasks.core.rendering.alb import alb_problems

REGION = "us-east-1"
OPTIONS = RenderOptions()


def record(ingress_path: str = "", **spec: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "endpoint_name": "demo",
        "desired_state": "running",
        "target_regions": [REGION],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", **spec},
    }
    if ingress_path:
        item["ingress_path"] = ingress_path
    return item


def refused(item: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidEndpointError) as caught:
        render_endpoint(Endpoint.from_item(item), REGION, OPTIONS)
    return dict(caught.value.problems)


@pytest.mark.parametrize("path", ["/inference/*", "/inference/x*", "/inference/a/*/b", "/inference/x?y"])
def test_a_wildcard_in_ingress_path_is_refused_naming_the_field(path: str) -> None:
    """Finding 2: '*' (and '?') in a Prefix path; on main '/inference/*' rendered as pathType Prefix."""
    problems = refused(record(path))
    assert list(problems) == ["ingress_path"]
    assert "'*' or '?'" in problems["ingress_path"] and "Load Balancer Controller" in problems["ingress_path"]


def test_a_health_check_path_over_1024_characters_is_refused() -> None:
    """Finding 2: the ALB's health-check path holds at most 1,024 characters; main accepted any length."""
    long = "/" + "h" * 1024
    problems = refused(record(health_check_path=long))
    assert list(problems) == ["spec.health_check_path"]
    assert "1024" in problems["spec.health_check_path"]
    parse_spec({"image": "x", "health_check_path": "/" + "h" * 1023})  # exactly 1,024: accepted


def test_the_health_check_path_is_checked_as_the_alb_gets_it() -> None:
    """With a root path (vLLM), the ALB checks /inference/{name}{health}: a record within 1,024 by itself
    can go over once prefixed; the rendered annotation is what is checked, and the record refused."""
    health = "/" + "h" * 1015
    assert parse_spec({"image": "x", "health_check_path": health})
    problems = refused(record(health_check_path=health))
    assert list(problems) == ["spec.health_check_path"]
    assert "root path included" in problems["spec.health_check_path"]
    # Without a root path (a command given), the same path is served as is and fits.
    assert render_endpoint(
        Endpoint.from_item(record(health_check_path=health, command=["serve"])), REGION, OPTIONS
    )


@pytest.mark.parametrize("path", ["/health#x", "/héalth", "/health\t", "health", '/he"alth', "/a<b>"])
def test_a_health_check_path_the_alb_refuses_is_refused(path: str) -> None:
    """Finding 2 (valid): RFC 3986 path characters and an optional query only; main took '#', non-ASCII
    and quotes."""
    problems = refused(record(health_check_path=path))
    assert list(problems) == ["spec.health_check_path"]


@pytest.mark.parametrize("path", ["/health", "/v1/health?ready=1", "/_status/ok;x=1", "/ping%20"])
def test_ordinary_health_check_paths_still_render(path: str) -> None:
    objects = render_endpoint(Endpoint.from_item(record(health_check_path=path)), REGION, OPTIONS)
    assert alb_problems(objects) == []


@pytest.mark.parametrize("weight", [1, 10, 50, 99])
def test_every_rendered_alb_value_is_within_the_controllers_limits(weight: int) -> None:
    """Every ALB annotation and rule path a valid record renders fits: interval 5..300, forward-action
    weights 0..999 over at most 5 target groups, paths without wildcards."""
    item = record(canary={"image": "vllm/vllm-openai:v0.6.4", "weight": weight})
    objects = render_endpoint(Endpoint.from_item(item), REGION, OPTIONS)
    ingress = next(obj for obj in objects if obj["kind"] == "Ingress")
    annotations = ingress["metadata"]["annotations"]
    action = json.loads(annotations[names.WEIGHTED_ROUTING_ANNOTATION])
    assert [g["weight"] for g in action["forwardConfig"]["targetGroups"]] == [100 - weight, weight]
    assert 5 <= int(annotations[names.HEALTHCHECK_INTERVAL_ANNOTATION]) <= 300
    assert alb_problems(objects) == []


def test_the_check_refuses_each_annotation_out_of_limits() -> None:
    """The checker itself, on objects out of each limit (the renderer never makes these today)."""
    action = {"type": "forward", "forwardConfig": {"targetGroups": [{"serviceName": "a", "weight": 1000}]}}
    ingress = {
        "kind": "Ingress",
        "metadata": {
            "annotations": {
                names.HEALTHCHECK_INTERVAL_ANNOTATION: "1",
                names.WEIGHTED_ROUTING_ANNOTATION: json.dumps(action),
                names.HEALTHCHECK_PATH_ANNOTATION: "/" + "x" * 1024,
            }
        },
        "spec": {"rules": [{"http": {"paths": [{"path": "/inference/*"}]}}]},
    }
    problems = dict(alb_problems([ingress]))
    assert set(problems) == {
        "ingress_path",
        "spec.health_check_path",
        "spec.canary.weight",
        "(rendering) healthcheck-interval-seconds",
    }
    assert (
        "0 to 999" in problems["spec.canary.weight"]
        and "5 to 300" in problems["(rendering) healthcheck-interval-seconds"]
    )
