"""The hand-over of GCO's monitor's field ownership (``gco_tasks.core.adoption``), on managedFields shaped as
kube-apiserver 1.36 wrote them for an object the Python client created (see test_adoption.py for the
same on the real server)."""

from __future__ import annotations

import copy
from typing import Any

from gco_tasks.core.adoption import (
    REPLICAS_PATH,
    handover_removals,
    has_legacy_owner,
    member_paths,
    migration_patch,
    unowned_paths,
    upgrade_managed_fields,
    without_fields,
)

GCO_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:gco.io/type": {}, "f:project": {}}},
    "f:spec": {
        "f:progressDeadlineSeconds": {},
        "f:replicas": {},
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"inference"}': {
                        ".": {},
                        "f:env": {
                            ".": {},
                            'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}},
                            'k:{"name":"OLD"}': {".": {}, "f:name": {}, "f:value": {}},
                        },
                        "f:image": {},
                        "f:name": {},
                    }
                }
            }
        },
    },
}
OUR_FIELDS = {
    "f:metadata": {"f:labels": {"f:app": {}, "f:gco.io/type": {}, "f:project": {}, "f:gco.io/endpoint": {}}},
    "f:spec": {
        "f:template": {
            "f:spec": {
                "f:containers": {
                    'k:{"name":"inference"}': {
                        ".": {},
                        "f:env": {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                        "f:image": {},
                        "f:name": {},
                    }
                }
            }
        }
    },
}


def entry(manager: str, operation: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    found = {
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": "2026-01-01T00:00:00Z",
    }
    return {**found, "fieldsType": "FieldsV1", "fieldsV1": copy.deepcopy(fields), **extra}


GCO = entry("OpenAPI-Generator", "Update", GCO_FIELDS)
STATUS = entry("kube-controller-manager", "Update", {"f:status": {"f:replicas": {}}}, subresource="status")


def test_nothing_to_do_without_gcos_entry() -> None:
    assert upgrade_managed_fields([STATUS, entry("gco-tasks", "Apply", OUR_FIELDS)]) is None
    # The client's default manager setting its own annotation is another tool, not GCO's monitor.
    other = entry("OpenAPI-Generator", "Update", {"f:metadata": {"f:annotations": {"f:x": {}}}})
    assert upgrade_managed_fields([other]) is None and not has_legacy_owner(
        {"metadata": {"managedFields": [other]}}
    )
    scale = entry("OpenAPI-Generator", "Update", GCO_FIELDS, subresource="scale")
    assert upgrade_managed_fields([scale]) is None


def test_gcos_entry_becomes_our_apply_entry_when_we_have_none() -> None:
    upgraded = upgrade_managed_fields([GCO, STATUS])
    assert upgraded is not None
    assert [(e["manager"], e["operation"]) for e in upgraded] == [
        ("kube-controller-manager", "Update"),
        ("gco-tasks", "Apply"),
    ]
    assert upgraded[1]["fieldsV1"] == GCO_FIELDS


def test_gcos_fields_are_merged_into_ours_and_replicas_the_hpa_owns_stay_unowned() -> None:
    ours = entry("gco-tasks", "Apply", OUR_FIELDS)
    upgraded = upgrade_managed_fields([ours, GCO, STATUS], keep_unowned=[REPLICAS_PATH])
    assert upgraded is not None and [e["manager"] for e in upgraded] == [
        "gco-tasks",
        "kube-controller-manager",
    ]
    members = member_paths(upgraded[0]["fieldsV1"])
    assert ("f:metadata", "f:labels", "f:gco.io/endpoint") in members  # ours kept
    assert ("f:spec", "f:progressDeadlineSeconds") in members  # GCO's now ours
    container = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"inference"}')
    assert (*container, "f:env", 'k:{"name":"OLD"}') in members
    assert REPLICAS_PATH not in members


def test_the_patch_is_guarded_by_the_resource_version() -> None:
    obj = {"metadata": {"resourceVersion": "41", "managedFields": [GCO]}}
    patch = migration_patch(obj)
    assert patch is not None and [op["path"] for op in patch] == [
        "/metadata/managedFields",
        "/metadata/resourceVersion",
    ]
    assert patch[1] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "41"}
    assert migration_patch({"metadata": {"managedFields": [STATUS]}}) is None


def test_replicas_are_left_unowned_only_when_we_do_not_set_them() -> None:
    assert unowned_paths({"kind": "Deployment", "spec": {"template": {}}}) == [REPLICAS_PATH]
    assert unowned_paths({"kind": "Deployment", "spec": {"replicas": 2}}) == []
    assert unowned_paths({"kind": "Service", "spec": {}}) == []


def test_what_the_first_apply_after_the_hand_over_removes() -> None:
    obj = {
        "metadata": {"managedFields": [GCO, entry("gco-tasks", "Apply", OUR_FIELDS), STATUS]},
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "inference",
                            "image": "x",
                            "env": [{"name": "A", "value": "1"}, {"name": "OLD", "value": "1"}],
                        }
                    ]
                }
            },
        },
    }
    removed = handover_removals(obj, keep_unowned=[REPLICAS_PATH])
    container = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"inference"}')
    old = (*container, "f:env", 'k:{"name":"OLD"}')
    assert removed == [
        ("f:spec", "f:progressDeadlineSeconds"),
        old,
        (*old, "f:name"),
        (*old, "f:value"),
    ]
    after = without_fields(obj, removed)
    assert "progressDeadlineSeconds" not in after["spec"] and after["spec"]["replicas"] == 2
    assert after["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert obj["spec"]["progressDeadlineSeconds"] == 600, "a copy"
