"""EndpointStore against moto's DynamoDB server over real HTTP, with real boto3 calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config

from gco_tasks.adapters.store import (
    ConcurrentUpdateError,
    EndpointExistsError,
    EndpointNotFoundError,
    EndpointStore,
    StoreError,
    TransientStoreError,
)
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, EndpointSpec, RegionStatus
from gco_tasks.core.status import status_needs_write

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture()
def store(dynamodb_url: str) -> EndpointStore:
    store = EndpointStore.from_settings(load_settings({"REGION": "us-east-1"}))
    assert store.create_table() is True
    return store


def _endpoint(name: str = "demo", regions: list[str] | None = None, **spec: Any) -> Endpoint:
    return Endpoint.new(name, EndpointSpec(image="vllm/vllm-openai:v0.6.3", **spec), regions or ["us-east-1"])


def _put_raw(store: EndpointStore, item: dict[str, Any]) -> None:
    boto3.resource("dynamodb", region_name="us-east-1").Table(store.table_name).put_item(Item=item)


def test_create_table_twice_reports_existing(store: EndpointStore) -> None:
    assert store.create_table() is False
    table = store.client.describe_table(TableName=store.table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "endpoint_name", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_create_then_get_round_trips(store: EndpointStore) -> None:
    endpoint = _endpoint(replicas=2, env={"A": "1"})
    store.create(endpoint)
    assert store.get("demo") == endpoint
    with pytest.raises(EndpointExistsError, match="already exists"):
        store.create(endpoint)


def test_get_missing_raises_not_found(store: EndpointStore) -> None:
    assert store.get_item("nope") is None
    with pytest.raises(EndpointNotFoundError):
        store.get("nope")


def test_reads_items_written_the_gco_way(store: EndpointStore) -> None:
    """GCO's store writes through boto3's resource layer: Decimals come back, floats were strings."""
    _put_raw(
        store,
        {
            "endpoint_name": "gco-made",
            "desired_state": "running",
            "target_regions": ["us-east-1", "eu-west-1"],
            "namespace": "gco-inference",
            "spec": {"image": "img:1", "port": 8080, "replicas": 3, "gpu_count": 1, "new_gco_field": "1.5"},
            "ingress_path": "/inference/gco-made",
            "created_at": "2025-01-01T00:00:00+00:00",
            "updated_at": "2025-01-01T00:00:00+00:00",
            "region_status": {"us-east-1": {"state": "running", "replicas_ready": 3, "replicas_desired": 3}},
        },
    )
    endpoint = store.get("gco-made")
    assert endpoint.spec.port == 8080 and endpoint.spec.replicas == 3
    assert endpoint.region_status["us-east-1"].replicas_ready == 3
    assert endpoint.spec.model_extra == {"new_gco_field": "1.5"}


def test_scan_is_paginated_and_filters_by_region(store: EndpointStore) -> None:
    pad = "x" * 2000  # ~2 KB per item: 700 items are well past one 1 MB Scan page
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(store.table_name)
    with table.batch_writer() as batch:
        for i in range(700):
            region = "us-east-1" if i % 2 else "eu-west-1"
            batch.put_item(
                Item={
                    "endpoint_name": f"e{i}",
                    "target_regions": [region],
                    "spec": {"image": "i"},
                    "pad": pad,
                }
            )
    pages = list(store.client.get_paginator("scan").paginate(TableName=store.table_name))
    assert len(pages) > 1
    assert len(list(store.scan_items())) == 700
    east = list(store.scan_items("us-east-1"))
    assert len(east) == 350 and all(item["target_regions"] == ["us-east-1"] for item in east)


def test_list_endpoints_skips_invalid_and_sorts_newest_first(store: EndpointStore) -> None:
    store.create(Endpoint.new("old", EndpointSpec(image="i"), ["r"], now=NOW))
    store.create(Endpoint.new("new", EndpointSpec(image="i"), ["r"], now=NOW + timedelta(hours=1)))
    _put_raw(store, {"endpoint_name": "Bad_Name", "spec": {"image": "i"}})
    assert [e.endpoint_name for e in store.list_endpoints()] == ["new", "old"]
    assert store.list_endpoints(desired_state="running") == []


def test_update_desired_state_with_expected_state(store: EndpointStore) -> None:
    store.create(_endpoint())
    before = store.get("demo").updated_at
    assert store.update_desired_state("demo", "stopped", expected_state="running") is False
    assert store.update_desired_state("demo", "stopped", expected_state="deploying") is True
    after = store.get("demo")
    assert after.desired_state == "stopped" and after.updated_at != before
    assert store.update_desired_state("missing", "stopped") is False
    assert store.get_item("missing") is None


def test_update_spec_sets_deploying_and_keeps_unknown_keys(store: EndpointStore) -> None:
    _put_raw(
        store,
        {
            "endpoint_name": "demo",
            "desired_state": "stopped",
            "target_regions": ["us-east-1"],
            "spec": {"image": "a:1", "future": {"x": 1}},
            "updated_at": "t0",
            "future_top": "kept",
        },
    )
    updated = store.update_spec("demo", lambda spec: spec.with_changes(image="a:2"))
    item = store.get_item("demo")
    assert item is not None
    assert item["spec"]["image"] == "a:2" and item["spec"]["future"] == {"x": 1}
    assert item["desired_state"] == "deploying" and item["future_top"] == "kept"
    assert item["updated_at"] == updated.updated_at != "t0"


def test_scale_keeps_desired_state(store: EndpointStore) -> None:
    store.create(_endpoint())
    store.update_desired_state("demo", "stopped")
    assert store.scale("demo", 3).spec.replicas == 3
    endpoint = store.get("demo")
    assert endpoint.spec.replicas == 3 and endpoint.desired_state == "stopped"
    with pytest.raises(EndpointNotFoundError):
        store.scale("missing", 1)


def test_update_spec_retries_on_concurrent_change(store: EndpointStore) -> None:
    """A writer that changes the record between our read and our write: we retry on the new state."""
    store.create(_endpoint())
    calls = 0

    def mutate(spec: EndpointSpec) -> EndpointSpec:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes while we hold a stale copy
            store.update_spec("demo", lambda s: s.with_changes(env={"OTHER": "1"}))
        return spec.with_changes(replicas=5)

    store.update_spec("demo", mutate)
    endpoint = store.get("demo")
    assert calls == 2
    assert endpoint.spec.replicas == 5 and endpoint.spec.env == {"OTHER": "1"}


def test_an_edit_landing_between_read_and_write_is_not_lost(store: EndpointStore) -> None:
    """Two CLI edits interleaved at the worst moment: B has read the record when A writes; B's write is
    conditional on the ``updated_at`` it read, so it fails, B re-reads and applies its change on top of
    A's. (Forced deterministically from inside B's mutation rather than with racing threads: moto's
    server does not make a conditional write atomic against a concurrent one, DynamoDB does, so a
    threaded test would test moto.)"""
    store.create(_endpoint())
    attempts: list[str] = []

    def add_k1(spec: EndpointSpec) -> EndpointSpec:
        attempts.append("B")
        if len(attempts) == 1:  # A lands after B's read, before B's write
            store.update_spec("demo", lambda s: s.with_changes(env={**s.env, "K0": "1"}))
        return spec.with_changes(env={**spec.env, "K1": "1"})

    store.update_spec("demo", add_k1)
    assert sorted(store.get("demo").spec.env) == ["K0", "K1"]
    assert attempts == ["B", "B"], "B's first write failed its condition and was retried once"


def test_update_spec_gives_up_when_record_keeps_changing(store: EndpointStore) -> None:
    store.create(_endpoint())

    def always_interfere(spec: EndpointSpec) -> EndpointSpec:
        store.update_desired_state("demo", "running")
        return spec

    with pytest.raises(ConcurrentUpdateError, match="kept changing"):
        store.update_spec("demo", always_interfere)


def test_status_written_only_on_change_or_heartbeat(store: EndpointStore) -> None:
    store.create(_endpoint())
    updated_at = store.get("demo").updated_at
    running = RegionStatus(state="running", replicas_ready=1, replicas_desired=1)

    assert store.update_region_status("demo", "us-east-1", running, None, now=NOW) is True
    written = store.get("demo").region_status["us-east-1"]
    assert written.last_sync == NOW.isoformat() and written.error is None
    # Same report, 1 minute later: no write. 6 minutes later: heartbeat write.
    assert (
        store.update_region_status("demo", "us-east-1", running, written, now=NOW + timedelta(minutes=1))
        is False
    )
    later = NOW + timedelta(minutes=6)
    assert store.update_region_status("demo", "us-east-1", running, written, now=later) is True
    # A changed report is written at once; previous may be the raw map from the item.
    raw_previous = store.get_item("demo")["region_status"]["us-east-1"]  # type: ignore[index]
    error = RegionStatus(state="error", error="bad spec")
    assert store.update_region_status("demo", "us-east-1", error, raw_previous, now=later) is True
    item = store.get_item("demo")
    assert item is not None
    assert item["region_status"]["us-east-1"]["error"] == "bad spec"
    assert item["updated_at"] == updated_at  # status writes never bump updated_at


def test_status_write_does_not_resurrect_purged_record(store: EndpointStore) -> None:
    status = RegionStatus(state="deleted")
    assert store.update_region_status("gone", "us-east-1", status, None, now=NOW) is False
    assert store.get_item("gone") is None


def test_status_write_creates_missing_region_status_map(store: EndpointStore) -> None:
    _put_raw(store, {"endpoint_name": "bare", "spec": {"image": "i"}})
    assert store.update_region_status("bare", "r1", RegionStatus(state="creating"), None, now=NOW) is True
    assert store.get("bare").region_status["r1"].state == "creating"


def test_remove_region_status(store: EndpointStore) -> None:
    store.create(_endpoint())
    store.update_region_status("demo", "old-region", RegionStatus(state="running"), None)
    assert store.remove_region_status("demo", "old-region") is True
    assert store.remove_region_status("demo", "old-region") is False
    assert store.get("demo").region_status == {}


def test_promote_only_from_deploying(store: EndpointStore) -> None:
    store.create(_endpoint())
    assert store.promote_if_deploying("demo") is True
    assert store.get("demo").desired_state == "running"
    assert store.promote_if_deploying("demo") is False
    assert store.promote_if_deploying("missing") is False


def test_promotion_is_for_the_version_the_regions_ran_and_moves_the_promoting_report_along(
    store: EndpointStore,
) -> None:
    store.create(_endpoint())
    read = store.get("demo").updated_at
    running = RegionStatus(state="running", replicas_ready=1, replicas_desired=1, observed_updated_at=read)
    assert store.update_region_status("demo", "us-east-1", running, None, now=NOW)
    store.scale("demo", 2)  # an edit after the regions reported: it needs its own rollout
    assert store.promote_if_deploying("demo", updated_at=read, region="us-east-1") is False
    assert store.get("demo").desired_state == "deploying"
    current = store.get("demo").updated_at
    assert store.promote_if_deploying("demo", updated_at=current, region="eu-west-1") is False  # no entry
    assert store.promote_if_deploying("demo", updated_at=current, region="us-east-1") is True
    promoted = store.get("demo")
    assert promoted.desired_state == "running" and promoted.updated_at != current
    assert promoted.region_status["us-east-1"].observed_updated_at == promoted.updated_at


def test_a_running_report_and_the_promotion_it_completes_are_one_conditional_write(
    store: EndpointStore,
) -> None:
    store.create(_endpoint())
    read = store.get("demo").updated_at
    running = RegionStatus(state="running", replicas_ready=1, replicas_desired=1, observed_updated_at=read)
    store.scale("demo", 2)  # an edit after the read: that version needs its own rollout
    assert store.report_running_and_promote("demo", "us-east-1", running, read, now=NOW) is False
    assert store.get("demo").desired_state == "deploying" and store.get("demo").region_status == {}
    current = store.get("demo").updated_at
    writes = _count_writes(store)
    assert store.report_running_and_promote("demo", "us-east-1", running, current, now=NOW) is True
    assert writes() == 1
    promoted = store.get("demo")
    assert promoted.desired_state == "running" and promoted.updated_at != current
    entry = promoted.region_status["us-east-1"]
    assert entry.state == "running" and entry.observed_updated_at == promoted.updated_at
    assert entry.last_sync is not None and entry.last_sync.startswith("2025-01-01T12:00")
    assert store.report_running_and_promote("demo", "us-east-1", running, promoted.updated_at) is False


def test_a_record_without_a_status_map_is_promoted_the_long_way(store: EndpointStore) -> None:
    store.create(_endpoint())
    store.client.update_item(
        TableName=store.table_name,
        Key={"endpoint_name": {"S": "demo"}},
        UpdateExpression="REMOVE region_status",
    )
    current = store.get("demo").updated_at
    running = RegionStatus(state="running", observed_updated_at=current)
    assert store.report_running_and_promote("demo", "us-east-1", running, current) is False
    assert store.get("demo").desired_state == "deploying"


def _count_writes(store: EndpointStore) -> Any:
    """A counter of the UpdateItem calls the store's client makes from now on."""
    calls: list[str] = []
    store.client.meta.events.register("before-call.dynamodb.UpdateItem", lambda **_: calls.append("u"))
    return lambda: len(calls)


def test_purge_spares_a_recreated_record(store: EndpointStore) -> None:
    store.create(_endpoint())
    store.update_desired_state("demo", "deleted")
    seen = store.get("demo")
    # Re-created under the same name after we read it (delete + create by someone else).
    assert store.delete_if_unchanged("demo", seen.updated_at) is True
    store.create(_endpoint())
    store.update_desired_state("demo", "deleted")
    assert store.delete_if_unchanged("demo", seen.updated_at) is False
    assert store.get_item("demo") is not None
    store.update_desired_state("demo", "running")
    assert store.delete_if_unchanged("demo", store.get("demo").updated_at) is False


def test_missing_table_is_a_store_error(dynamodb_url: str) -> None:
    store = EndpointStore.from_settings(load_settings({"INFERENCE_ENDPOINTS_TABLE_NAME": "no-such-table"}))
    with pytest.raises(StoreError, match="create-table") as info:
        store.get_item("x")
    assert not isinstance(info.value, TransientStoreError)


def test_connection_failure_is_transient(dynamodb_url: str) -> None:
    """Nothing listens: one attempt (the client is built with total_max_attempts=1, since botocore reads
    its retry configuration only when the client is created), and the failure is a TransientStoreError."""
    from gco_sandbox.services import free_port

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=2)
    client = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=f"http://localhost:{free_port()}", config=config
    )
    attempts: list[str] = []
    client.meta.events.register("before-send.dynamodb.GetItem", lambda **_: attempts.append("sent"))
    store = EndpointStore(client, "gco-inference-endpoints")
    with pytest.raises(TransientStoreError):
        store.get_item("x")
    assert attempts == ["sent"], "the retry configuration took effect"


def test_status_needs_write_rules() -> None:
    running = RegionStatus(state="running", replicas_ready=1, replicas_desired=1)
    fresh = {
        "state": "running",
        "replicas_ready": Decimal(1),
        "replicas_desired": 1,
        "last_sync": NOW.isoformat(),
    }
    assert status_needs_write(running, fresh, NOW + timedelta(seconds=299), 300) is False
    assert status_needs_write(running, fresh, NOW + timedelta(seconds=300), 300) is True
    assert status_needs_write(running, {**fresh, "replicas_ready": 0}, NOW, 300) is True
    assert status_needs_write(running, {**fresh, "error": "x"}, NOW, 300) is True
    assert status_needs_write(running, {**fresh, "last_sync": "junk"}, NOW, 300) is True
    assert status_needs_write(running, {"state": "???"}, NOW, 300) is True
    assert status_needs_write(running, None, NOW, 300) is True
