"""``instrument_dynamodb`` on the store's real boto3 client against moto's DynamoDB server over HTTP:
one count per API call by operation and outcome (ok, conditional_failed, client_error,
connection_error), with its duration, and instrumenting twice does not count twice."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from gco_sandbox.services import free_port
from gco_tasks.adapters.dynamo_metrics import instrument_dynamodb
from gco_tasks.adapters.metrics import FleetMetrics
from gco_tasks.adapters.store import EndpointStore, StoreError
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, parse_spec

R = "us-east-1"


def count(m: FleetMetrics, operation: str, outcome: str) -> float:
    labels = {"region": R, "operation": operation, "outcome": outcome}
    return m.registry.get_sample_value("gco_dynamodb_requests_total", labels) or 0.0


def test_store_calls_are_counted_by_operation_and_outcome(
    dynamodb_url: str, fresh_metrics: FleetMetrics
) -> None:
    store = EndpointStore.from_settings(load_settings({"REGION": R}))
    instrument_dynamodb(store.client, R)
    instrument_dynamodb(store.client, R)
    store.create_table()
    store.create(Endpoint.new("my-llm", parse_spec({"image": "nginx:1.27"}), [R]))
    assert store.get_item("my-llm") is not None
    assert [item["endpoint_name"] for item in store.scan_items()] == ["my-llm"]
    assert store.delete_if_unchanged("my-llm", "1999-01-01T00:00:00Z") is False
    with pytest.raises(store.client.exceptions.ResourceNotFoundException):
        store.client.describe_table(TableName="no-such-table")

    m = fresh_metrics
    assert count(m, "CreateTable", "ok") == 1
    assert count(m, "PutItem", "ok") == 1
    assert count(m, "GetItem", "ok") == 1
    assert count(m, "Scan", "ok") == 1
    assert count(m, "DeleteItem", "conditional_failed") == 1
    assert count(m, "DescribeTable", "client_error") == 1
    durations = m.registry.get_sample_value(
        "gco_dynamodb_request_duration_seconds_count", {"region": R, "operation": "GetItem"}
    )
    assert durations == 1
    total = m.registry.get_sample_value(
        "gco_dynamodb_request_duration_seconds_sum", {"region": R, "operation": "GetItem"}
    )
    assert total is not None and 0 < total < 5


def test_a_call_that_gets_no_answer_is_a_connection_error(fresh_metrics: FleetMetrics) -> None:
    client = boto3.client(
        "dynamodb",
        region_name=R,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    instrument_dynamodb(client, R)
    store = EndpointStore(client, "gco-inference-endpoints", 300)
    with pytest.raises(StoreError):
        store.get_item("my-llm")
    assert count(fresh_metrics, "GetItem", "connection_error") == 1
