"""A cold start as the requests and messages show it (issue 26), on both API servers: a new endpoint is
created without a read (create-only requests), a rollout left in progress is looked at again soon by a
requeue of its own (deduplicated, backing off) that no fan-out repeats, and the periodic tasks are taken
before the reconciles waiting in the region's queue. Counts of requests by verb and of messages, never
timings."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.signals import task_prerun
from kubernetes import client

from gco_tasks.adapters.locks import RegionState
from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, RequestLog, reported_state, wait_for
from .test_fleet_worker import REDIS_KEYS, app_configured, in_process_worker

NAMESPACE = "gco-inference"
TASK = "gco_tasks.reconcile_endpoint"


def create(fleet: Fleet, name: str) -> None:
    fleet.store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27", "gpu_count": 0}), [REGION]))


def hints(fleet: Fleet, now: float | None = None) -> tuple[dict[str, Hint], dict[str, Any]]:
    """One fan-out: the messages it sent (name -> hint, through JSON as Celery sends them), its summary."""
    sent: dict[str, Hint] = {}

    def send(name: str, hint: Hint | None) -> None:
        parsed = parse_hint(json.loads(json.dumps(hint.as_message()))) if hint is not None else None
        assert parsed is not None
        sent[name] = parsed

    return sent, fan_out(fleet, send, now).as_dict()


def ready(cluster: Cluster, name: str) -> bool:
    live = client.AppsV1Api(cluster.api_client).read_namespaced_deployment_status(name, NAMESPACE)
    status = live.status
    return status is not None and bool(status.ready_replicas) and status.updated_replicas == status.replicas


def by_name(log: RequestLog, verb: str) -> dict[str, int]:
    """Requests of ``verb`` to one named object of ours (a path ending in a name, not a collection)."""
    kinds = ("/deployments/", "/services/", "/ingresses/", "/horizontalpodautoscalers/")
    return {
        call: n
        for call, n in log.calls.items()
        if call.startswith(f"{verb} ") and any(k in call for k in kinds)
    }


def test_a_new_endpoint_is_created_without_a_read_and_looked_at_again_by_its_own_requeue(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails on the old behaviour: the reconcile read each object it was about to create by name (three
    GETs answered 404: ``ownership.foreign_objects`` and ``observe``'s Deployment read), then waited for
    the next fan-out to see the rollout finish, which sent the endpoint again (no ``reconciler.Requeue``,
    no ``fanout.held_by_backoff``)."""
    create(fleet, "cold")
    sent, _ = hints(fleet)
    log = RequestLog(fleet, monkeypatch)
    now = time.time()
    first = reconcile(fleet, "cold", sent["cold"], now)
    assert by_name(log, "GET") == {}, "a create-only request proves the object absent: no read first"
    assert sum(by_name(log, "PATCH").values()) == 3  # Deployment, Service, Ingress, each created once
    assert first.state == "creating" and first.requeue is not None
    assert first.requeue.countdown == pytest.approx(fleet.settings.rollout_requeue_seconds)

    # Meanwhile a fan-out does not send it again to look at the rollout: its backoff says when.
    _, summary = hints(fleet, now + 1)
    assert summary["reasons"].get("rollout", 0) == 0, summary

    wait_for(lambda: ready(cluster, "cold"), "the Deployment to be ready", timeout=60)
    log.calls.clear()
    second = reconcile(fleet, "cold", first.requeue.hint)
    assert second.state == "running" and second.requeue is None
    assert reported_state(fleet, "cold") == "running"
    assert sum(by_name(log, "GET").values()) == 1  # the Deployment: what the status reports
    assert by_name(log, "PATCH") == {} and by_name(log, "POST") == {} and by_name(log, "DELETE") == {}


def test_at_a_short_interval_a_requeue_still_reads_only_the_deployment(
    fleet: Fleet, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if a hint were fresh for one interval only: at a 2 s interval every requeued look (2 s,
    then 4, 8...) read the Service and the Ingress again, two GETs per look for nothing
    (``reconciler.HINT_TRUST_FLOOR_SECONDS``); and if the requeue's horizon were the interval, there
    would be no requeue at all (``REQUEUE_HORIZON_SECONDS``). Past the floor the hint is stale and every
    object is read."""
    monkeypatch.setattr(
        fleet, "settings", fleet.settings.model_copy(update={"reconcile_interval_seconds": 2})
    )
    create(fleet, "quick")
    sent, _ = hints(fleet)
    first = reconcile(fleet, "quick", sent["quick"])
    assert first.requeue is not None
    wait_for(lambda: ready(cluster, "quick"), "the Deployment to be ready", timeout=60)
    log = RequestLog(fleet, monkeypatch)
    taken = first.requeue.hint.taken_at
    assert reconcile(fleet, "quick", first.requeue.hint, taken + 10).state == "running"
    assert sum(by_name(log, "GET").values()) == 1  # the Deployment: what the status reports
    log.calls.clear()
    reconcile(fleet, "quick", first.requeue.hint, taken + 20)
    assert sum(by_name(log, "GET").values()) == 3  # stale: the Service and the Ingress too


def test_a_rollout_backoff_sends_one_requeue_at_a_time_and_doubles_up_to_the_horizon(
    redis_url: str,
) -> None:
    """Fails on the old behaviour (no ``RegionState.schedule_requeue``): every reconcile of a rollout in
    progress was left to the next fan-out, which sent it again every cycle."""
    state = RegionState(redis.Redis.from_url(redis_url), REGION)
    look = {"first": 2.0, "cap": 120.0, "interval": 15.0}
    assert state.schedule_requeue("a", 100.0, **look) == 2.0
    assert state.schedule_requeue("a", 101.0, **look) is None  # one outstanding: not another
    assert state.schedule_requeue("a", 102.5, **look) == 8.0  # each look backs off further
    assert state.schedule_requeue("a", 111.0, **look) is None  # 16 s: the fan-out's, when due
    assert state.requeue_marks(["a", "b"]) == {"a": (127.0, 110.5)}
    state.clear_requeue("a")  # the rollout ended: the next one starts afresh
    assert state.requeue_marks(["a"]) == {}
    assert state.schedule_requeue("a", 200.0, **look) == 2.0


def test_a_forged_requeue_hint_cannot_hide_a_missing_object(fleet: Fleet, cluster: Cluster) -> None:
    """A requeue's hint (or a message forged like one) that calls every object in sync costs one GET of
    the Deployment and writes nothing it calls in sync; the next fan-out, from its own LISTs, sends the
    endpoint again for the object that is gone, backoff or not. Fails if a rollout backoff held an
    endpoint whatever the fan-out found (a backoff answers only ``fanout.WAITING_REASONS``)."""
    create(fleet, "gone")
    sent, _ = hints(fleet)
    first = reconcile(fleet, "gone", sent["gone"])
    assert first.requeue is not None
    client.CoreV1Api(cluster.api_client).delete_namespaced_service("gone", NAMESPACE)
    wait_for(lambda: ready(cluster, "gone"), "the Deployment to be ready", timeout=60)
    now = time.time()
    reconcile(fleet, "gone", first.requeue.hint, now)
    fleet.state.schedule_requeue("gone", now, 2.0, 120.0, 15.0)  # as if a rollout were still going on
    again, summary = hints(fleet, now)
    assert "gone" in again and summary["reasons"].get("change") == 1, summary
    reconcile(fleet, "gone", again["gone"])
    client.CoreV1Api(cluster.api_client).read_namespaced_service("gone", NAMESPACE)


@pytest.fixture()
def order() -> Iterator[list[str]]:
    """The names of the tasks the in-process worker starts, in order."""
    started: list[str] = []
    lock = threading.Lock()

    def record(sender: Any = None, **_: Any) -> None:
        with lock:
            started.append(str(sender.name))

    task_prerun.connect(record, weak=False)
    try:
        yield started
    finally:
        task_prerun.disconnect(record)


@pytest.mark.standin_only  # the queues, not the API server, decide the order
def test_a_fan_out_is_taken_before_the_reconciles_waiting_in_the_queue(
    fleet: Fleet, redis_url: str, order: list[str]
) -> None:
    """Fails on the old behaviour: the periodic tasks shared the reconciles' queue, so a fan-out waited
    (and expired) behind the reconciles a previous one had sent; without ``CycleQueueFirst`` the worker
    (started with ``-Q gco.<region>`` only, as before) never consumes the cycle queue at all."""
    from gco_tasks.worker.app import app

    with app_configured(**dict.fromkeys(REDIS_KEYS, redis_url)), app.producer_or_acquire() as producer:
        for i in range(30):  # names without a record: each reconcile reads and finds nothing
            app.send_task(
                "gco_tasks.reconcile_endpoint",
                args=[f"absent-{i}"],
                queue=fleet.settings.queue,
                producer=producer,
            )
        app.send_task("gco_tasks.fan_out", queue=fleet.settings.cycle_queue, producer=producer)
    with in_process_worker(fleet, redis_url, concurrency=1):
        wait_for(lambda: "gco_tasks.fan_out" in order, "the fan-out to run", timeout=60)
    assert order.index("gco_tasks.fan_out") <= 1, order  # at most the one reconcile prefetched before it


@pytest.mark.standin_only  # Celery's requeue, not the API server
def test_a_worker_sees_a_new_endpoint_running_without_a_second_fan_out(
    fleet: Fleet, redis_url: str, order: list[str]
) -> None:
    """Fails on the old behaviour: the reconcile that created the objects reported ``creating`` and
    nothing looked again before the next fan-out (one whole interval); now its requeue does (one
    message, marked pending so that no fan-out sends another meanwhile)."""
    from gco_tasks.worker import tasks
    from gco_tasks.worker.app import app

    create(fleet, "solo")
    with in_process_worker(fleet, redis_url, concurrency=2):
        with app.producer_or_acquire() as producer:
            sent, _ = hints(fleet)
            tasks.reconcile_endpoint.apply_async(
                args=["solo"],
                kwargs={"hint": sent["solo"].as_message()},
                queue=fleet.settings.queue,
                producer=producer,
            )
        wait_for(lambda: reported_state(fleet, "solo") == "running", "the endpoint to be running", timeout=60)
    assert order.count(TASK) == 2, order  # the fan-out's message and the requeue, each run once


@pytest.mark.standin_only  # Celery's messages and DynamoDB's reads, not the API server
def test_a_fan_outs_endpoints_go_ten_to_a_message_their_records_read_at_once(
    fleet: Fleet, redis_url: str, order: list[str]
) -> None:
    """Fails on the old behaviour: a fan-out sent one ``reconcile_endpoint`` per endpoint and each read
    its record with its own GetItem (twelve messages and twelve GetItems here, and as many again for
    the requeues that see them running)."""
    from gco_tasks.worker import tasks

    names = [f"many-{i:02}" for i in range(12)]
    for name in names:
        create(fleet, name)
    reads: list[str] = []  # the worker's calls (this thread's polling below is not counted)
    here = threading.get_ident()
    fleet.store.client.meta.events.register(
        "before-call.dynamodb",
        lambda model, **_: reads.append(model.name) if threading.get_ident() != here else None,
    )
    with in_process_worker(fleet, redis_url, concurrency=2):
        with tasks._reconcile_sender(fleet) as send:
            assert fan_out(fleet, send).sent == len(names)
        wait_for(
            lambda: all(reported_state(fleet, name) == "running" for name in names),
            "every endpoint to be running",
            timeout=90,
        )
    batches = order.count("gco_tasks.reconcile_endpoints")
    assert TASK not in order and batches >= 4, order  # 10 + 2, then their requeues, batched alike
    assert reads.count("GetItem") == 0 and reads.count("BatchGetItem") == batches, reads


def test_a_fan_out_defers_to_a_backlog_of_reconciles_but_not_for_ever(redis_url: str) -> None:
    """Fails on the old behaviour: every fan-out ran its Scan and LISTs while the reconciles it had sent
    were still waiting (in a cold start, a pool process of two spent on fan-outs whose every message
    was already pending); and if deferring had no bound, a queue that never drains would hide changes."""
    from gco_tasks.worker import tasks
    from gco_tasks.worker.app import app

    queue = "gco.us-east-1"
    with app_configured(**dict.fromkeys(REDIS_KEYS, redis_url)):
        assert tasks._backlog(queue) == 0
        with app.producer_or_acquire() as producer:
            for i in range(tasks.BACKLOG_DEFER):
                app.send_task(TASK, args=[f"waiting-{i}"], queue=queue, producer=producer)
        backlog = tasks._backlog(queue)
    assert backlog == tasks.BACKLOG_DEFER
    interval = 15.0
    cycles = [tasks.deferred(backlog, n * interval + 1, interval) for n in range(8)]
    assert cycles == [False, True, True, True, False, True, True, True]
    assert not any(tasks.deferred(backlog - 1, n * interval + 1, interval) for n in range(8))
    # A short interval defers for a minute, not four cycles (eight seconds at 2 s: a Scan of the whole
    # table every eight seconds while the reconciles wait on the table).
    short = [tasks.deferred(backlog, n * 2.0 + 0.5, 2.0) for n in range(61)]
    assert [n for n, waits in enumerate(short) if not waits] == [0, 30, 60]
