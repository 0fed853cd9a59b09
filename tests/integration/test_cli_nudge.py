"""``REGION_REDIS_URLS``: after a change, the CLI asks each target region it can reach to reconcile at
once (one ``reconcile_endpoint`` message on the region's queue of its own Redis), against moto and real
``redis-server``s; off without configuration, a region it cannot reach is left to its cycle, and no
output ever shows a URL's password."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from gco_sandbox.services import RedisServer, free_port, start_redis
from gco_tasks.cli import app
from gco_tasks.cli.nudge import RegionUrlsError, parse_region_urls

IMAGE = "vllm/vllm-openai:v0.6.3"


@pytest.fixture()
def west() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture()
def cli(dynamodb_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    runner = CliRunner()
    monkeypatch.delenv("REGION_REDIS_URLS", raising=False)
    assert runner.invoke(app, ["endpoints", "create-table"]).exit_code == 0
    return runner


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, ["endpoints", *args])
    assert result.exit_code == 0, result.output
    return result.output


def queued(url: str, queue: str) -> list[dict[str, Any]]:
    """The task messages waiting on ``queue``: their headers and decoded (args, kwargs, embed)."""
    client = redis.Redis.from_url(url)
    messages = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        body = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"task": envelope["headers"]["task"], "args": body[0]})
    client.close()
    return messages


def test_off_without_configuration(cli: CliRunner, redis_url: str) -> None:
    output = run(cli, "deploy", "demo", "-i", IMAGE, "-r", "us-east-1")
    assert "reconcile" not in output
    assert queued(redis_url, "gco.us-east-1") == []


def test_every_reachable_target_region_gets_one_reconcile_after_each_change(
    cli: CliRunner, redis_url: str, west: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    urls = f"us-east-1={redis_url}, eu-west-1={west.url}, ap-south-1={dead}"
    monkeypatch.setenv("REGION_REDIS_URLS", urls)
    output = run(cli, "deploy", "demo", "-i", IMAGE, "-r", "us-east-1", "-r", "ap-south-1")
    assert "us-east-1: reconcile requested." in output
    assert "ap-south-1: reconcile not reached" in output and "s3cret" not in output
    assert "eu-west-1" not in output  # not a target of this endpoint
    assert queued(redis_url, "gco.us-east-1") == [{"task": "gco_tasks.reconcile_endpoint", "args": ["demo"]}]
    assert queued(west.url, "gco.eu-west-1") == []

    for change in (["scale", "demo", "--replicas", "2"], ["update-image", "demo", "-i", IMAGE + "1"]):
        assert "us-east-1: reconcile requested." in run(cli, *change)
    run(cli, "stop", "demo", "--yes")
    assert len(queued(redis_url, "gco.us-east-1")) == 4


def test_a_malformed_setting_is_named_without_its_value(
    cli: CliRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGION_REDIS_URLS", "us-east-1=http://user:hunter2@example")
    result = cli.invoke(app, ["endpoints", "deploy", "demo", "-i", IMAGE, "-r", "us-east-1"])
    assert result.exit_code == 0, result.output  # the record is written; only the nudge is skipped
    assert "REGION_REDIS_URLS: entry 1 is not region=redis://" in result.output
    assert "hunter2" not in result.output
    assert queued(redis_url, "gco.us-east-1") == []


def test_region_urls_parse() -> None:
    assert parse_region_urls("") == {}
    assert parse_region_urls(" a=redis://h:1/0 ,, b=rediss://h/1 ") == {
        "a": "redis://h:1/0",
        "b": "rediss://h/1",
    }
    for bad in ("=redis://h/0", "a=h:6379", "a", "a=redis://"):
        with pytest.raises(RegionUrlsError, match="entry 1"):
            parse_region_urls(bad)
