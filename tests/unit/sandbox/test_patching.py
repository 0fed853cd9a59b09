"""Merge patch, strategic merge patch and JSON patch of the sandbox API server (pure)."""

from __future__ import annotations

import pytest

from gco_sandbox.patching import (
    PatchError,
    json_merge_patch,
    json_patch,
    merge_key,
    strategic_merge_patch,
)

POD = {
    "containers": [
        {
            "name": "app",
            "image": "a:1",
            "env": [{"name": "A", "value": "1"}],
            "ports": [{"containerPort": 80}],
        },
        {"name": "side", "image": "s:1"},
    ],
    "tolerations": [{"key": "gpu", "operator": "Exists"}],
    "volumes": [{"name": "v1", "emptyDir": {}}],
}


def test_merge_keys_follow_kubernetes() -> None:
    assert merge_key(("spec", "containers")) == "name"
    assert merge_key(("spec", "containers", "ports")) == "containerPort"
    assert merge_key(("spec", "ports")) == "port"
    assert merge_key(("spec", "containers", "volumeMounts")) == "mountPath"
    assert merge_key(("spec", "tolerations")) is None  # atomic upstream too


def test_json_merge_patch_merges_maps_and_replaces_lists() -> None:
    live = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert json_merge_patch(live, {"a": {"b": None, "d": 3}, "l": [3]}) == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert live == {"a": {"b": 1, "c": 2}, "l": [1, 2]}


def test_strategic_merge_merges_containers_env_and_ports_by_key() -> None:
    patch = {
        "containers": [
            {
                "name": "app",
                "image": "a:2",
                "env": [{"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "name": "http"}],
            }
        ]
    }
    merged = strategic_merge_patch(POD, patch)
    app, side = merged["containers"]
    assert app["image"] == "a:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert app["ports"] == [{"containerPort": 80, "name": "http"}]
    assert side == {"name": "side", "image": "s:1"}


def test_strategic_merge_appends_new_items_and_replaces_atomic_lists() -> None:
    patch = {
        "volumes": [{"name": "v2", "emptyDir": {}}],
        "tolerations": [{"key": "spot", "operator": "Exists"}],
    }
    merged = strategic_merge_patch(POD, patch)
    assert [v["name"] for v in merged["volumes"]] == ["v1", "v2"]
    assert merged["tolerations"] == [{"key": "spot", "operator": "Exists"}]


def test_strategic_merge_directives() -> None:
    deleted = strategic_merge_patch(POD, {"containers": [{"name": "side", "$patch": "delete"}]})
    assert [c["name"] for c in deleted["containers"]] == ["app"]
    replaced = strategic_merge_patch(
        POD, {"containers": [{"name": "x", "image": "x"}, {"$patch": "replace"}]}
    )
    assert replaced["containers"] == [{"name": "x", "image": "x"}]
    assert "volumes" not in strategic_merge_patch(POD, {"volumes": None})
    assert strategic_merge_patch({"m": {"a": 1}}, {"m": {"$patch": "replace", "b": 2}}) == {"m": {"b": 2}}


def test_strategic_merge_needs_the_merge_key() -> None:
    with pytest.raises(PatchError, match="merge key"):
        strategic_merge_patch(POD, {"containers": [{"image": "no-name"}]})


def test_json_patch_operations() -> None:
    doc = {"spec": {"replicas": 1, "list": [1, 2]}}
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/spec/list/0"},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
        {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/moved", "value": 3},
        {"op": "add", "path": "/metadata~1x", "value": {}},
    ]
    assert json_patch(doc, ops) == {"spec": {"replicas": 3, "list": [2, 3], "moved": 3}, "metadata/x": {}}
    assert doc == {"spec": {"replicas": 1, "list": [1, 2]}}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "nope", "path": "/a"}],
        {"op": "add"},
    ],
)
def test_json_patch_failures(ops: object) -> None:
    with pytest.raises(PatchError):
        json_patch({"a": 1}, ops)
