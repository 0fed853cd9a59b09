"""Kubernetes writes paced by one budget per region, shared through Redis (``gco_tasks.adapters.ratelimit``),
against a real ``redis-server`` and the sandbox API server: processes share the rate, a 429 holds every
writer off, and without Redis each process paces itself until Redis is back."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
import redis

from gco_sandbox.services import start_redis
from gco_tasks.adapters.cluster import ClusterGateway, TransientClusterError
from gco_tasks.adapters.ratelimit import REDIS_RETRY_SECONDS, RedisWritePacer, WriteThrottled
from gco_tasks.core.conventions import MANAGED_SELECTOR, RegionKeys
from gco_tasks.core.errors import TransientError
from tests.support.redisio import fail_fast_client

KEY = RegionKeys("us-east-1").kube_write_bucket
NS = "gco-inference"


class FakeTime:
    """A clock and a sleep the test controls: sleeping moves the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _hammer(url: str, rate: float, burst: int, seconds: float, results: Any) -> None:
    """One writer process: take slots as fast as the budget allows for ``seconds``."""
    pacer = RedisWritePacer(redis.Redis.from_url(url), KEY, rate, burst)
    began = time.time()
    granted, last = 0, began
    while time.time() < began + seconds:
        pacer.acquire()
        granted, last = granted + 1, time.time()
    results.put((began, last, granted))


def test_writer_processes_share_one_rate(redis_url: str) -> None:
    rate, burst, seconds, processes = 100.0, 10, 1.5, 3
    context = multiprocessing.get_context("fork")  # each child makes its own Redis connection
    results = context.Queue()
    workers = [
        context.Process(target=_hammer, args=(redis_url, rate, burst, seconds, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    runs = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    first = min(began for began, _, _ in runs)
    last = max(end for _, end, _ in runs)
    total = sum(granted for _, _, granted in runs)
    # Every slot lies between the first request and the last grant: the bucket's bound over that span.
    assert total <= burst + rate * (last - first) + 1, runs
    # ... and the budget is used, not starved: each process wrote, together near the rate.
    assert all(granted > 0 for _, _, granted in runs), runs
    assert total >= 0.25 * rate * seconds, runs  # generous: three writers on a shared 2-core machine


def test_without_redis_each_process_paces_itself_then_returns_to_the_shared_budget() -> None:
    server = start_redis()
    port = server.port
    fake = FakeTime()
    client = fail_fast_client(port)
    pacer = RedisWritePacer(client, KEY, rate=2.0, burst=2, sleep=fake.sleep, clock=fake.clock)
    pacer.acquire()
    assert client.exists(KEY)
    server.stop()
    try:
        for _ in range(4):
            pacer.acquire()  # the local bucket: full (2), then one slot every 0.5 s
        assert fake.slept == [pytest.approx(0.5), pytest.approx(0.5)]
        server = start_redis(port=port)
        fake.now += REDIS_RETRY_SECONDS
        pacer.acquire()
        assert client.exists(KEY), "back on the shared bucket once Redis answers again"
    finally:
        client.close()
        server.stop()


def test_a_429_holds_off_every_writer_of_the_region(redis_url: str, apiserver: Any, kube_client: Any) -> None:
    fake_a, fake_b = FakeTime(), FakeTime()
    pacer_a = RedisWritePacer(redis.Redis.from_url(redis_url), KEY, 100.0, 100, fake_a.sleep, fake_a.clock)
    pacer_b = RedisWritePacer(redis.Redis.from_url(redis_url), KEY, 100.0, 100, fake_b.sleep, fake_b.clock)
    writer_a = ClusterGateway(kube_client, NS, timeout_seconds=10, pacer=pacer_a)
    writer_b = ClusterGateway(kube_client, NS, timeout_seconds=10, pacer=pacer_b)
    apiserver.add_fault(verb="apply", resource="services", status=429, count=1)
    began = time.monotonic()
    with pytest.raises(TransientClusterError) as throttled:
        writer_a.apply(_service("a"))
    assert throttled.value.status == 429 and throttled.value.retry_after == 1.0
    writer_b.apply(_service("b"))  # another worker: waits out the Retry-After, then writes
    elapsed = time.monotonic() - began  # real time that passed on Redis's clock meanwhile
    slot = 1.0 + 1 / 100.0  # the Retry-After, then one slot at 100/s
    assert len(fake_b.slept) == 1 and slot - elapsed <= fake_b.slept[0] <= slot
    pacer_b.hold_off(30.0)  # a long Retry-After: the task retries later rather than hold a worker
    with pytest.raises(WriteThrottled) as later:
        writer_a.delete("Service", "b")
    # 30 s on Redis's clock, less the time that passed since hold_off
    assert isinstance(later.value, TransientError) and 29.0 <= (later.value.retry_after or 0) < 31


def test_the_gateway_asks_for_a_slot_before_each_write_and_never_for_a_read(kube_client: Any) -> None:
    class Counting:
        def __init__(self) -> None:
            self.acquired = 0

        def acquire(self) -> None:
            self.acquired += 1

        def hold_off(self, seconds: float) -> None:  # pragma: no cover - no 429 here
            raise AssertionError(seconds)

    pacer = Counting()
    gateway = ClusterGateway(kube_client, NS, timeout_seconds=10, pacer=pacer)
    gateway.apply(_service("paced"))
    gateway.apply(_service("paced"), dry_run=True)
    assert pacer.acquired == 2
    assert [obj["metadata"]["name"] for obj in gateway.list_objects(MANAGED_SELECTOR)] == ["paced"]
    assert pacer.acquired == 2
    assert gateway.delete("Service", "paced") and not gateway.delete("Service", "paced")
    assert pacer.acquired == 4


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "labels": {"gco.io/type": "inference", "app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8000, "targetPort": 8000}]},
    }
