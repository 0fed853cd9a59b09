"""The fleet through a real Celery worker (Celery's in-process test worker, threads pool) on a private
redis-server: fan_out's messages reach reconcile_endpoint on the region's queue, eight concurrent
reconciles of one endpoint end consistent, a malformed record gets ``error`` while others converge,
transient API failures are retried and a permanent one (422) ends the task FAILED without a retry.
Each runs on the stand-in and on the real control plane; the two retry tests inject faults, which only
the stand-in can do (``standin_only``).

The worker uses the global Celery app (the tasks are registered on it); ``app_configured`` points it at
the private Redis and gives it back exactly as it was afterwards."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_retry

from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.errors import ReconcileFailed
from gco_tasks.core.plan import plan_changes
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import desired_objects
from gco_tasks.flows.observe import candidate_keys, read_digests
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker import tasks
from gco_tasks.worker.app import app
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.process import use_fleet

from .harness import REGION, reported_state, run_cycle

REDIS_KEYS = ("broker_url", "result_backend", "redbeat_redis_url")


def _drop_connections() -> None:
    """Forget the pools and result backend the app cached (built lazily from the configuration of the
    moment), so its next user gets them for the configuration it finds. The pools themselves stay in
    kombu's registry, keyed by URL, for whoever else uses that URL."""
    app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    app._local = threading.local()


@contextlib.contextmanager
def app_configured(**values: Any) -> Iterator[None]:
    """The global app with ``values`` in its configuration, then as it was: the same values, and no
    connection built from the test's ones."""
    saved = {key: app.conf[key] for key in values}
    app.conf.update(values)
    _drop_connections()
    try:
        yield
    finally:
        app.conf.update(saved)
        _drop_connections()


@contextlib.contextmanager
def in_process_worker(fleet: Fleet, redis_url: str, concurrency: int) -> Iterator[Any]:
    """Celery's test worker (threads) on ``fleet``'s queue and this test's Redis, the app put back after."""
    use_fleet(fleet)
    try:
        with (
            app_configured(**dict.fromkeys(REDIS_KEYS, redis_url)),
            start_worker(
                app,
                pool="threads",
                concurrency=concurrency,
                queues=[fleet.settings.queue],
                perform_ping_check=False,
            ) as running,
        ):
            yield running
    finally:
        use_fleet(None)


@pytest.fixture()
def worker(fleet: Fleet, redis_url: str) -> Iterator[Any]:
    with in_process_worker(fleet, redis_url, concurrency=8) as running:
        yield running


@pytest.fixture()
def retries() -> Iterator[list[str]]:
    """The ids of the tasks the in-process worker retries (Celery's ``task_retry`` signal)."""
    seen: list[str] = []

    def on_retry(request: Any = None, **_: Any) -> None:
        seen.append(str(getattr(request, "id", "?")))

    task_retry.connect(on_retry, weak=False)
    yield seen
    task_retry.disconnect(on_retry)


def test_app_configured_gives_the_app_back_as_it_was(redis_url: str) -> None:
    before = {key: app.conf[key] for key in REDIS_KEYS}
    assert redis_url not in before.values()
    with app_configured(**dict.fromkeys(REDIS_KEYS, redis_url)):
        assert all(app.conf[key] == redis_url for key in REDIS_KEYS)
        assert app.pool.connection.as_uri().endswith(redis_url.rsplit(":", 1)[-1])
    assert {key: app.conf[key] for key in REDIS_KEYS} == before
    assert app._pool is None, "no pool built from the test's Redis survives"


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_fan_out_through_the_worker_converges_and_isolates_a_bad_record(fleet: Fleet, worker: Any) -> None:
    for name in ("alpha", "beta"):
        fleet.store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27"}), [REGION]))
    item = Endpoint.new("gamma", parse_spec({"image": "nginx:1.27"}), [REGION]).to_item()
    item["spec"]["port"] = 70000
    fleet.store.client.put_item(
        TableName=fleet.store.table_name, Item={k: _typed(v) for k, v in item.items()}
    )

    def converged() -> bool:
        tasks.fan_out.apply_async(queue=fleet.settings.queue)
        time.sleep(0.5)
        return reported_state(fleet, "alpha") == "running" and reported_state(fleet, "beta") == "running"

    wait_for(converged, timeout=60)
    assert reported_state(fleet, "gamma") == "error"
    error = (fleet.store.get_item("gamma") or {})["region_status"][REGION]["error"]
    assert "spec.port" in error
    assert fleet.cluster.list_objects(endpoint_selector("gamma")) == []


def test_ad_hoc_call_returns_what_it_did(fleet: Fleet, worker: Any) -> None:
    fleet.store.create(Endpoint.new("solo", parse_spec({"image": "nginx:1.27"}), [REGION]))
    result = tasks.reconcile_endpoint.apply_async(args=["solo"], queue=fleet.settings.queue).get(timeout=20)
    assert result["endpoint"] == "solo" and result["state"] == "creating"
    assert "apply Deployment/solo" in result["actions"]


def test_eight_concurrent_reconciles_end_consistent(fleet: Fleet, worker: Any) -> None:
    fleet.store.create(
        Endpoint.new(
            "busy",
            parse_spec({"image": "nginx:1.27", "canary": {"image": "nginx:1.28", "weight": 30}}),
            [REGION],
        )
    )
    calls = [
        tasks.reconcile_endpoint.apply_async(args=["busy"], queue=fleet.settings.queue) for _ in range(8)
    ]
    results = [call.get(timeout=30) for call in calls]
    assert any(result["actions"] for result in results)
    assert_in_sync(fleet, "busy")


def test_concurrent_reconciles_are_safe_without_the_lock(fleet: Fleet, monkeypatch: Any) -> None:
    """Locks are an optimisation: with the endpoint lock taken away, eight racing reconciles still
    converge to the same objects (server-side apply is idempotent; 404 on delete is success)."""
    fleet.store.create(Endpoint.new("racy", parse_spec({"image": "nginx:1.27"}), [REGION]))
    monkeypatch.setattr(fleet.state, "endpoint_lock", lambda *a, **k: contextlib.nullcontext(True))
    errors: list[BaseException] = []

    def race() -> None:
        try:
            reconcile(fleet, "racy")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def race_eight() -> None:
        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert_in_sync(fleet, "racy")

    race_eight()
    fleet.store.update_spec("racy", lambda spec: spec.with_changes(canary=None, replicas=2))
    race_eight()


def assert_in_sync(fleet: Fleet, name: str) -> None:
    """A fresh read of record and cluster plans nothing: every object is exactly as rendered."""
    item = fleet.store.get_item(name)
    assert item is not None
    desired = desired_objects(Endpoint.from_item(item), REGION, fleet.render_options)
    plan = plan_changes(desired, read_digests(fleet.cluster, candidate_keys(name), name, desired))
    assert plan.is_empty, plan.describe()
    assert all(result["actions"] == [] for result in run_cycle(fleet) if result["endpoint"] == name)


def _typed(value: Any) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeSerializer

    return dict(TypeSerializer().serialize(value))


@pytest.mark.standin_only  # fault injection
def test_transient_api_failures_are_retried_until_they_pass(
    fleet: Fleet, worker: Any, apiserver: Any, retries: list[str]
) -> None:
    """Two 503s then a 429 on the Deployment apply: the task backs off, retries and converges."""
    fleet.store.create(Endpoint.new("flaky", parse_spec({"image": "nginx:1.27"}), [REGION]))
    apiserver.add_fault(verb="apply", resource="deployments", status=503, count=2)
    apiserver.add_fault(verb="apply", resource="deployments", status=429, count=1)
    result = tasks.reconcile_endpoint.apply_async(args=["flaky"], queue=fleet.settings.queue).get(timeout=60)
    assert "apply Deployment/flaky" in result["actions"]
    assert apiserver.stats()["apply deployments"] == 4
    assert result["state"] == "creating" and len(retries) == 3, "each transient failure is one retry"
    wait_for(lambda: reported_state(fleet, "flaky") in ("creating", "running"))  # its requeued look reports


@pytest.mark.standin_only  # fault injection
def test_a_permanent_failure_is_reported_once_and_not_retried(
    fleet: Fleet, worker: Any, apiserver: Any, retries: list[str]
) -> None:
    """A 422 on the Deployment: the endpoint's status says why, the Service still goes ahead, and the
    task ends FAILED (a true outcome to count) without retrying, after the status was written."""
    fleet.store.create(Endpoint.new("refused", parse_spec({"image": "nginx:1.27"}), [REGION]))
    apiserver.add_fault(verb="apply", resource="deployments", status=422, count=5)
    call = tasks.reconcile_endpoint.apply_async(args=["refused"], queue=fleet.settings.queue)
    with pytest.raises(ReconcileFailed) as failed:
        call.get(timeout=30)
    assert call.state == "FAILURE"
    assert retries == []
    result = failed.value.result
    assert result["state"] == "error" and "422" in result["error"]
    assert result["actions"] == ["apply Service/refused", "apply Ingress/inference-refused"]
    assert apiserver.stats()["apply deployments"] == 1
    item = fleet.store.get_item("refused") or {}
    assert "422" in item["region_status"][REGION]["error"]
