"""A record cannot take what is not its own, by its own fields (pure validation, ``gco_tasks.core.records``):
a name ending in ``-canary`` would own another endpoint's canary Deployment and Service, and an
``ingress_path`` of ``/`` or outside ``/inference/`` would take other services' traffic on the shared load
balancer. Both are refused with a message naming the field and why. (Paths that shadow another record's,
and objects with our name but without our labels, need the other records and the cluster: the reconciler
checks those.)"""

from __future__ import annotations

from typing import Any

import pytest

from gco_tasks.core.conventions import CANARY_SUFFIX
from gco_tasks.core.fields import MAX_INGRESS_PATH_LENGTH, check_ingress_path, validate_endpoint_name
from gco_tasks.core.records import Endpoint, EndpointSpec, InvalidEndpointError
from gco_tasks.core.rendering import RenderOptions, render_endpoint


def item(**fields: Any) -> dict[str, Any]:
    return {
        "endpoint_name": "demo",
        "target_regions": ["us-east-1"],
        "spec": {"image": "nginx:1.27"},
        **fields,
    }


def problems(record: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidEndpointError) as caught:
        Endpoint.from_item(record)
    return dict(caught.value.problems)


@pytest.mark.parametrize("name", ["demo-canary", "a-canary", "llama-3-canary"])
def test_a_name_ending_in_the_canary_suffix_is_refused(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        validate_endpoint_name(name)
    message = str(caught.value)
    base = name.removesuffix(CANARY_SUFFIX)
    assert f"must not end in '{CANARY_SUFFIX}'" in message and f"'{base}'s canary" in message
    assert "endpoint_name" in problems(item(endpoint_name=name))


def test_the_canary_suffix_collides_with_what_the_renderer_names_canary_objects() -> None:
    """The rule protects exactly the names the renderer gives another endpoint's canary objects."""
    spec = {"image": "nginx:1.27", "canary": {"image": "nginx:1.28", "weight": 20}}
    objects = render_endpoint(Endpoint.from_item(item(spec=spec)), "us-east-1", RenderOptions())
    canary = {obj["kind"] for obj in objects if obj["metadata"]["name"] == f"demo{CANARY_SUFFIX}"}
    assert canary == {"Deployment", "Service"}


@pytest.mark.parametrize("name", ["canary", "canary-demo", "my-canary-1", "canaryx", "x-canaries"])
def test_names_that_merely_contain_canary_are_fine(name: str) -> None:
    assert validate_endpoint_name(name) == name
    assert Endpoint.from_item(item(endpoint_name=name)).ingress_path == f"/inference/{name}"


@pytest.mark.parametrize(
    "path", ["/", "//", "/inference", "/inference/", "/inference//", "/api", "/api/v1/jobs", "/inferencex/a"]
)
def test_root_and_paths_outside_the_inference_prefix_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="under /inference/ with at least one non-empty segment") as caught:
        check_ingress_path(path)
    assert "shared" in str(caught.value), "the message says why"
    assert "ingress_path" in problems(item(ingress_path=path))


@pytest.mark.parametrize(
    "path",
    [
        "/inference/a//b",
        "/inference/./a",
        "/inference/a/..",
        "/inference/a%2Fb",
        "/inference/a b",
        "/inference/é",
    ],
)
def test_malformed_segments_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="segments"):
        check_ingress_path(path)


def test_overlong_paths_are_refused() -> None:
    prefix = "/inference/"
    check_ingress_path(prefix + "a" * (MAX_INGRESS_PATH_LENGTH - len(prefix)))
    with pytest.raises(ValueError, match=str(MAX_INGRESS_PATH_LENGTH)):
        check_ingress_path(prefix + "a" * (MAX_INGRESS_PATH_LENGTH - len(prefix) + 1))


@pytest.mark.parametrize(
    "path", ["/inference/demo", "/inference/demo/", "/inference/team-a/demo", "/inference/v1.2"]
)
def test_paths_under_the_prefix_pass(path: str) -> None:
    assert check_ingress_path(path) == path
    assert Endpoint.from_item(item(ingress_path=path)).ingress_path == path


def test_absent_or_empty_path_defaults_to_gcos_and_new_records_pass() -> None:
    assert Endpoint.from_item(item()).ingress_path == "/inference/demo"
    assert Endpoint.from_item(item(ingress_path="")).ingress_path == "/inference/demo"
    longest = "m" * 53
    assert Endpoint.new(longest, EndpointSpec(image="i"), ["r"]).ingress_path == f"/inference/{longest}"
