"""The fan-out's Scan of a large table (``EndpointStore.scan_items``) as a parallel Scan, against moto's
DynamoDB over real HTTP: every segment read to its end, every item exactly once, and the number of
segments chosen by the table's size unless ``DYNAMODB_SCAN_SEGMENTS`` says."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest

from gco_tasks.adapters.dynamo_client import scan_segments_for
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings

PAD = "x" * 2000  # ~2 KB per item: 1,500 items are ~3 MB, three 1 MB Scan pages or more


def _store(segments: int = 0) -> EndpointStore:
    store = EndpointStore.from_settings(load_settings({"DYNAMODB_SCAN_SEGMENTS": str(segments)}))
    store.create_table()
    return store


def _fill(store: EndpointStore, count: int) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(store.table_name)
    with table.batch_writer() as batch:
        for i in range(count):
            region = "us-east-1" if i % 2 else "eu-west-1"
            batch.put_item(
                Item={
                    "endpoint_name": f"e{i}",
                    "target_regions": [region],
                    "spec": {"image": "i"},
                    "pad": PAD,
                }
            )


def _scans(store: EndpointStore) -> list[dict[str, Any]]:
    """The parameters of every Scan call the store's client makes from now on."""
    calls: list[dict[str, Any]] = []
    store.client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: calls.append(dict(params))
    )
    return calls


@pytest.mark.parametrize("segments", [1, 4])
def test_every_item_once_whatever_the_segments(dynamodb_url: str, segments: int) -> None:
    store = _store(segments)
    _fill(store, 1500)
    calls = _scans(store)
    names = Counter(item["endpoint_name"] for item in store.scan_items())
    assert len(names) == 1500 and set(names.values()) == {1}
    east = [item["endpoint_name"] for item in store.scan_items("us-east-1")]
    assert len(east) == 750 and len(set(east)) == 750
    if segments == 1:
        assert all("Segment" not in call for call in calls) and len(calls) >= 2 * 3
    else:
        read = Counter(call["Segment"] for call in calls if call.get("TotalSegments") == segments)
        assert sorted(read) == [0, 1, 2, 3], read
        assert sum(read.values()) == len(calls)


def test_segments_follow_the_size_of_the_last_scan_unless_set(dynamodb_url: str) -> None:
    auto = _store()
    _fill(auto, 3000)  # ~6 MB
    calls = _scans(auto)
    assert len(list(auto.scan_items())) == 3000  # the first Scan of a process: one segment
    assert all("Segment" not in call for call in calls)
    assert auto.last_scan_bytes > 5 * 1024 * 1024
    expected = scan_segments_for(auto.last_scan_bytes)  # one per 2 MB received
    assert 3 <= expected <= 4
    calls.clear()
    assert len(list(auto.scan_items())) == 3000
    assert {call.get("TotalSegments") for call in calls} == {expected}
    assert scan_segments_for(auto.last_scan_bytes) == expected  # stable once parallel
    fixed = _store(6)
    calls = _scans(fixed)
    assert len(list(fixed.scan_items())) == 3000
    assert {call.get("TotalSegments") for call in calls} == {6}
