"""What the fan-out's triage remembers (``gco_tasks.core.triage_cache``): one entry per endpoint and per live
object, valid for one version of it; a new version is computed again and replaces the old one."""

from __future__ import annotations

import copy
from typing import Any

from gco_tasks.core.rendering import RenderOptions
from gco_tasks.core.triage_cache import Lru, digest, rendering

REGION = "us-east-1"


def test_one_entry_per_key_replaced_by_a_new_version_and_bounded() -> None:
    memo: Lru[str, int] = Lru(size=2)
    made: list[str] = []

    def make(value: int, label: str) -> Any:
        return lambda: made.append(label) or value

    assert memo.get("a", 1, make(10, "a1")) == 10
    assert memo.get("a", 1, make(11, "again")) == 10
    assert memo.get("a", 2, make(12, "a2")) == 12 and len(memo) == 1
    memo.get("b", 1, make(20, "b1"))
    memo.get("a", 2, make(0, "unused"))  # a is now the most recent
    memo.get("c", 1, make(30, "c1"))  # b goes
    assert memo.get("b", 1, make(21, "b again")) == 21
    assert made == ["a1", "a2", "b1", "c1", "b again"] and len(memo) == 2


def item(image: str = "nginx:1.27") -> dict[str, Any]:
    return {
        "endpoint_name": "memo-demo",
        "desired_state": "running",
        "target_regions": [REGION],
        "spec": {"image": image, "gpu_count": 0},
        "region_status": {REGION: {"state": "running"}},
    }


def test_a_rendering_is_remembered_until_the_record_changes_but_not_for_its_status() -> None:
    first = rendering(item(), REGION, RenderOptions())
    status_only = {**item(), "region_status": {REGION: {"state": "updating"}}}
    assert rendering(status_only, REGION, RenderOptions()) is first
    changed = rendering(item("nginx:1.28"), REGION, RenderOptions())
    assert (
        changed is not first
        and changed.stubs[0]["metadata"]["annotations"] != first.stubs[0]["metadata"]["annotations"]
    )
    assert rendering({**item(), "spec": {"image": ""}}, REGION, RenderOptions()).error


def test_a_digest_is_remembered_per_object_version_and_desired_hash() -> None:
    live = {"kind": "Service", "metadata": {"name": "memo-svc", "uid": "u", "resourceVersion": "1"}}
    calls: list[int] = []

    def full() -> dict[str, Any]:
        calls.append(1)
        return {"kind": "Service", "metadata": {"name": "memo-svc"}, "spec": {"type": "ClusterIP"}}

    assert digest(live, "h1", full).drift == ("spec",)
    assert digest(live, "h1", full).drift == ("spec",) and len(calls) == 1
    newer = copy.deepcopy(live)
    newer["metadata"]["resourceVersion"] = "2"
    newer["spec"] = {"type": "ClusterIP"}
    assert digest(newer, "h1", full).drift == () and len(calls) == 2
    assert digest(newer, "h2", full).drift == () and len(calls) == 3


def test_a_record_holding_binary_sets_and_numbers_is_rendered_as_invalid_not_a_crash() -> None:
    """DynamoDB accepts binary values and sets anywhere: the fan-out's memo key must not crash on them
    (``default=str`` did: boto3's Binary has a bytes ``str``, which stopped the whole fan-out)."""
    from decimal import Decimal

    from boto3.dynamodb.types import Binary

    odd = item()
    odd["spec"]["image"] = Binary(b"\x00\xff")
    odd["labels"] = {"team": {"b", "a"}, "size": Decimal("1.5"), "raw": b"\x01"}
    found = rendering(odd, REGION, RenderOptions())
    assert found.endpoint is None and found.error and "image" in found.error
    same = copy.deepcopy(odd)  # as the next Scan decodes it: the same values in the same order
    assert rendering(same, REGION, RenderOptions()) is found, "the same record makes the same memo key"
    reordered = copy.deepcopy(odd)
    reordered["labels"]["team"] = {"a", "b"}
    assert rendering(reordered, REGION, RenderOptions()) == found, "at worst a miss, never another result"
