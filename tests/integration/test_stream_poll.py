"""``STREAM_POLL_SECONDS``: the table's DynamoDB Stream (moto implements streams) read by each region, so
a change reaches the cluster without waiting for the next cycle; against moto over HTTP, a real
``redis-server`` and the stand-in, through Celery's in-process worker. Off without configuration."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from gco_tasks.core.config import load_settings
from gco_tasks.core.errors import InfrastructureError
from gco_tasks.core.records import Endpoint, RegionStatus, parse_spec
from gco_tasks.flows.streamwatch import poll_stream
from gco_tasks.worker import tasks
from gco_tasks.worker.app import app, beat_schedule
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.process import use_fleet

from .harness import REGION, make_fleet
from .test_fleet_worker import REDIS_KEYS, app_configured

IMAGE = "vllm/vllm-openai:v0.6.3"


def _endpoint(name: str, regions: list[str]) -> Endpoint:
    return Endpoint.new(name, parse_spec({"image": IMAGE}), regions)


@pytest.fixture()
def streamed(redis_url: str, dynamodb_url: str, kube_client: Any) -> Iterator[Fleet]:
    """A fleet on a table with a stream (NEW_AND_OLD_IMAGES), as a region would enable it."""
    fleet = make_fleet(redis_url, kube_client, stream_poll_seconds=1)
    fleet.store.client.create_table(
        TableName=fleet.store.table_name,
        AttributeDefinitions=[{"AttributeName": "endpoint_name", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "endpoint_name", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield fleet
    fleet.state.client.close()


def poll(fleet: Fleet) -> tuple[dict[str, Any], list[str]]:
    sent: list[str] = []
    result = poll_stream(fleet, lambda name, hint: sent.append(name)).as_dict()
    for name in sent:
        fleet.state.clear_pending(name)  # as the reconcile that consumes the message would
    return result, sent


def test_only_desired_state_changes_of_this_region_are_sent_once(streamed: Fleet) -> None:
    store = streamed.store
    store.create(_endpoint("before", [REGION]))
    assert poll(streamed) == ({"changes": 0, "sent": 0, "already_pending": 0}, [])  # the past: the cycle's
    store.create(_endpoint("demo", [REGION]))
    store.create(_endpoint("elsewhere", ["eu-west-1"]))
    store.update_spec("demo", lambda spec: spec.with_changes(replicas=2))
    result, sent = poll(streamed)
    assert sent == ["demo"] and result["changes"] == 3
    store.update_region_status("demo", REGION, RegionStatus(state="creating"), previous=None)
    store.update_region_status("elsewhere", "eu-west-1", RegionStatus(state="running"), previous=None)
    assert poll(streamed)[1] == []  # status written back by the fleets: nothing to do
    store.update_desired_state("demo", "stopped")
    store.update_desired_state("before", "deleted")
    assert poll(streamed)[1] == ["demo", "before"]
    assert poll(streamed) == ({"changes": 0, "sent": 0, "already_pending": 0}, [])


def test_a_change_reaches_the_cluster_through_the_stream_alone(streamed: Fleet, redis_url: str) -> None:
    """No fan-out runs: the stream poll's message is what the worker reconciles."""
    use_fleet(streamed)
    try:
        with app_configured(**dict.fromkeys(REDIS_KEYS, redis_url)):
            assert tasks.stream_poll.apply().get()["sent"] == 0  # the first read: to the stream's end
            streamed.store.create(_endpoint("demo", [REGION]))
            with start_worker(
                app, pool="threads", concurrency=2, queues=[streamed.settings.queue], perform_ping_check=False
            ):
                assert tasks.stream_poll.apply().get()["sent"] == 1
                deadline = time.monotonic() + 30
                while not streamed.cluster.list_objects("app=demo", kinds=["Deployment"]):
                    assert time.monotonic() < deadline, "the Deployment never appeared"
                    time.sleep(0.1)
    finally:
        use_fleet(None)


def test_a_table_without_a_stream_says_how_to_enable_it(
    redis_url: str, dynamodb_url: str, kube_client: Any
) -> None:
    fleet = make_fleet(redis_url, kube_client, stream_poll_seconds=1)
    fleet.store.create_table()
    with pytest.raises(InfrastructureError, match="enable DynamoDB Streams"):
        poll_stream(fleet, lambda name, hint: None)
    fleet.state.client.close()


def test_beat_polls_the_stream_only_when_configured() -> None:
    assert "stream-poll" not in beat_schedule(load_settings({}))
    entry = beat_schedule(load_settings({"STREAM_POLL_SECONDS": "2"}))["stream-poll"]
    assert entry["task"] == "gco_tasks.stream_poll" and entry["schedule"] == 2.0
