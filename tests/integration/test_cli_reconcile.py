"""`gco-tasks endpoints reconcile NAME [-r REGION ...] [--wait]`: one reconcile_endpoint message on each
region's queue through REGION_REDIS_URLS, and with --wait the outcome from the region's result backend,
against a real Celery worker (in process, threads) on a private redis-server, moto's DynamoDB over HTTP
and either API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from gco_tasks.cli import app
from gco_tasks.worker.fleet import Fleet

from .test_fleet_worker import in_process_worker

IMAGE = "nginx:1.27"


@pytest.fixture()
def cli(fleet: Fleet, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("REGION_REDIS_URLS", f"us-east-1={redis_url}")
    return CliRunner()


@pytest.fixture()
def worker(fleet: Fleet, redis_url: str) -> Iterator[Any]:
    with in_process_worker(fleet, redis_url, concurrency=2) as running:
        yield running


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["endpoints", *args])
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def deployment_image(fleet: Fleet, name: str) -> str | None:
    from kubernetes import client

    try:
        found = client.AppsV1Api(fleet.cluster.api_client).read_namespaced_deployment(name, "gco-inference")
    except client.ApiException:
        return None
    return str(found.spec.template.spec.containers[0].image)


def deploy_quietly(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deploy x without the CLI's nudge after it: the reconcile the test asks for is the only one."""
    with monkeypatch.context() as quiet:
        quiet.delenv("REGION_REDIS_URLS")
        run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")


def test_reconcile_wait_prints_what_the_region_did(
    cli: CliRunner, fleet: Fleet, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_quietly(cli, monkeypatch)
    out = run(cli, "reconcile", "x", "--wait", "--timeout", "60")
    assert out.splitlines() == [
        "us-east-1: reconcile requested.",
        "us-east-1: applied (apply Deployment/x, apply Service/x, apply Ingress/inference-x); state creating",
    ], out
    assert deployment_image(fleet, "x") == IMAGE
    out = run(cli, "reconcile", "x", "--wait", "--timeout", "60")
    assert out.splitlines()[1].startswith("us-east-1: "), out


def test_a_failed_reconcile_is_printed_with_its_error_and_exits_1(
    cli: CliRunner, fleet: Fleet, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_quietly(cli, monkeypatch)
    # Another tool writes a port the cluster cannot take: the region reports error, the task FAILS.
    fleet.store.client.update_item(
        TableName=fleet.store.table_name, Key={"endpoint_name": {"S": "x"}},
        UpdateExpression="SET spec.port = :p", ExpressionAttributeValues={":p": {"N": "70000"}},
    )  # fmt: skip
    out = run(cli, "reconcile", "x", "--wait", "--timeout", "60", code=1)
    assert "us-east-1: invalid record; state error: invalid endpoint 'x': spec.port" in out, out


def test_without_a_worker_the_message_waits_and_wait_says_nothing_came(
    cli: CliRunner, fleet: Fleet, redis_url: str
) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")
    queue = redis.Redis.from_url(redis_url)
    before = queue.llen("gco.us-east-1")
    out = run(cli, "reconcile", "x", "--wait", "--timeout", "2", code=1)
    assert "us-east-1: no outcome within 2s: is the region's worker running?" in out
    assert queue.llen("gco.us-east-1") == before + 1, "the message waits on the region's queue"
    queue.close()


def test_regions_it_cannot_reach_and_bad_input_are_one_sentence_each(
    cli: CliRunner, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1", "-r", "eu-west-1")
    out = run(cli, "reconcile", "x", code=1)
    assert "us-east-1: reconcile requested." in out
    assert "eu-west-1: not reached (REGION_REDIS_URLS has no URL for it); its next cycle does it." in out
    assert run(cli, "reconcile", "x", "-r", "us-east-1") == "us-east-1: reconcile requested.\n"
    assert "endpoint 'nope' not found" in run(cli, "reconcile", "nope", code=1)
    assert "unknown region 'us-est-1'" in run(cli, "reconcile", "x", "-r", "us-est-1", code=1)
    monkeypatch.setenv("REGION_REDIS_URLS", "")
    assert "REGION_REDIS_URLS is empty" in run(cli, "reconcile", "x", code=1)
    monkeypatch.setenv("REGION_REDIS_URLS", "us-east-1=redis://:hunter2@127.0.0.1:1/0")
    out = run(cli, "reconcile", "x", "-r", "us-east-1", code=1)
    assert "us-east-1: reconcile not reached (" in out and "hunter2" not in out
