"""Field ownership and server-side apply of the sandbox API server (pure)."""

from __future__ import annotations

import pytest

from gco_sandbox.apply import (
    ApplyConflict,
    ManagedEntry,
    apply,
    field_set,
    from_fields_v1,
    record_update,
    to_fields_v1,
)

NOW = "2024-01-01T00:00:00Z"


def deployment(replicas: int | None = 2, env: bool = True, labels: dict[str, str] | None = None) -> dict:
    container: dict = {"name": "app", "image": "img:1"}
    if env:
        container["env"] = [{"name": "A", "value": "1"}]
    spec: dict = {"template": {"spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "uid": "u", "labels": labels or {"app": "d"}},
        "spec": spec,
    }


def ssa(
    live: dict | None,
    config: dict,
    entries: list[ManagedEntry] | None = None,
    manager: str = "gco-tasks",
    force: bool = True,
) -> tuple[dict, list[ManagedEntry]]:
    return apply(live, config, entries or [], manager=manager, force=force, api_version="apps/v1", now=NOW)


def test_field_set_has_leaves_and_keyed_items_but_no_server_fields() -> None:
    paths = field_set(deployment())
    item = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}')
    assert ("f:spec", "f:replicas") in paths
    assert item in paths
    assert (*item, "f:env", 'k:{"name":"A"}', "f:value") in paths
    assert ("f:metadata", "f:labels", "f:app") in paths
    assert not any(p[:2] in {("f:metadata", "f:name"), ("f:metadata", "f:uid")} for p in paths)
    assert not any(p[0] in ("f:apiVersion", "f:kind") for p in paths)


def test_fields_v1_round_trip_marks_owned_nodes_with_a_dot() -> None:
    paths = field_set(deployment())
    tree = to_fields_v1(paths)
    containers = tree["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers['k:{"name":"app"}']["."] == {}
    assert from_fields_v1(tree) == paths


def test_apply_creates_and_owns_everything_it_sent() -> None:
    obj, entries = ssa(None, deployment())
    assert obj["spec"]["replicas"] == 2
    assert [(e.manager, e.operation) for e in entries] == [("gco-tasks", "Apply")]


def test_apply_removes_fields_it_no_longer_sends() -> None:
    obj, entries = ssa(None, deployment(labels={"app": "d", "canary": "yes"}))
    obj, entries = ssa(obj, deployment(env=False), entries)
    assert obj["metadata"]["labels"] == {"app": "d"}
    assert "env" not in obj["spec"]["template"]["spec"]["containers"][0]


def test_replicas_written_through_scale_survive_an_apply_without_them() -> None:
    obj, entries = ssa(None, deployment(replicas=2))
    scaled = {**obj, "spec": {**obj["spec"], "replicas": 5}}
    entries = record_update(
        obj, scaled, entries, manager="hpa", api_version="apps/v1", now=NOW, subresource="scale"
    )
    owners = {e.manager: e for e in entries}
    assert ("f:spec", "f:replicas") in owners["hpa"].fields
    assert ("f:spec", "f:replicas") not in owners["gco-tasks"].fields
    obj, entries = ssa(scaled, deployment(replicas=None), entries)
    assert obj["spec"]["replicas"] == 5


def test_conflict_without_force_and_takeover_with_force() -> None:
    obj, entries = ssa(None, deployment(replicas=2), manager="kubectl")
    with pytest.raises(ApplyConflict, match=r'"kubectl": spec.replicas'):
        ssa(obj, deployment(replicas=3), entries, force=False)
    obj, entries = ssa(obj, deployment(replicas=3), entries, force=True)
    owners = {e.manager: e.fields for e in entries}
    assert ("f:spec", "f:replicas") in owners["gco-tasks"]
    assert ("f:spec", "f:replicas") not in owners["kubectl"]


def test_same_value_is_shared_not_a_conflict() -> None:
    obj, entries = ssa(None, deployment(), manager="kubectl")
    obj, entries = ssa(obj, deployment(), entries, force=False)
    shared = ("f:spec", "f:replicas")
    assert all(shared in e.fields for e in entries)
    # gco-tasks stops sending replicas: kubectl still owns it, so it stays.
    obj, entries = ssa(obj, deployment(replicas=None), entries)
    assert obj["spec"]["replicas"] == 2


def test_keyed_items_of_other_managers_stay() -> None:
    obj, entries = ssa(None, deployment())
    sidecar = {"name": "side", "image": "s:1"}
    patched = {
        **obj,
        "spec": {
            **obj["spec"],
            "template": {"spec": {"containers": [*obj["spec"]["template"]["spec"]["containers"], sidecar]}},
        },
    }
    entries = record_update(obj, patched, entries, manager="injector", api_version="apps/v1", now=NOW)
    obj, entries = ssa(patched, deployment(env=False), entries)
    names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "side"]


def test_update_takes_changed_fields_and_drops_removed_ones() -> None:
    obj, entries = ssa(None, deployment())
    changed = deployment(env=False)
    entries = record_update(obj, changed, entries, manager="editor", api_version="apps/v1", now=NOW)
    env_paths = [p for e in entries for p in e.fields if "f:env" in p]
    assert env_paths == []
    assert record_update(changed, changed, entries, manager="x", api_version="v1", now=NOW) == entries
