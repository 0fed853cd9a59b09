"""Issue 22, finding 7: Redis state written by someone with Redis access never stops a cycle. On main a
non-UTF-8 member of the watchdog's withheld set or a junk unready-since clock raised outside
``GcoError`` (``UnicodeDecodeError``, ``ValueError``) and killed every fan-out and watchdog run; a future
time in the write-budget bucket stopped every Kubernetes write of the region; and a lock or pending mark
planted without a TTL held its endpoint forever. Now unreadable state is taken as absent and logged,
and a lock or mark without TTL gets one. Real redis-server, both API servers."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from gco_tasks.core.conventions import RegionKeys, endpoint_selector
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.watchdog import watchdog
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, make_fleet, run_cycle

KEYS = RegionKeys(REGION)


def kinds(fleet: Fleet, name: str) -> set[str]:
    return {obj["kind"] for obj in fleet.cluster.list_objects(endpoint_selector(name))}


@pytest.fixture()
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_junk_watchdog_state_is_absent_and_the_cycle_goes_on(
    fleet: Fleet, redis_url: str, cluster: Cluster, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = make_fleet(redis_url, cluster.api_client)
    fleet.store.create(Endpoint.new("web", parse_spec({"image": "nginx:1.27", "gpu_count": 0}), [REGION]))
    raw.sadd(KEYS.ingress_withheld, b"\xff\xfe not utf-8")
    raw.hset(KEYS.unready_since, mapping={"web": "yesterday", "nan-clock": "nan", b"\xc3\x28": "1.0"})
    with caplog.at_level(logging.WARNING, logger="gco_tasks.adapters.locks"):
        results = run_cycle(fleet)
        report = watchdog(fleet, now=time.time())
    assert [r["endpoint"] for r in results] == ["web"] and "Ingress" in kinds(fleet, "web")
    assert report.withheld == []
    assert fleet.state.withheld() == set()
    assert "web" not in fleet.state.unready_clocks() and "nan-clock" not in fleet.state.unready_clocks()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "unreadable members" in logged and "watchdog clock" in logged


def test_a_future_time_in_the_write_budget_does_not_stop_the_writes(
    fleet: Fleet, redis_url: str, cluster: Cluster, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = make_fleet(redis_url, cluster.api_client)
    fleet.store.create(Endpoint.new("web", parse_spec({"image": "nginx:1.27", "gpu_count": 0}), [REGION]))
    raw.hset(KEYS.kube_write_bucket, mapping={"tokens": "-1e9", "at": repr(time.time() + 10**9)})
    with caplog.at_level(logging.WARNING, logger="gco_tasks.adapters.ratelimit"):
        run_cycle(fleet)
    assert {"Deployment", "Service", "Ingress"} <= kinds(fleet, "web"), "every write was throttled"
    assert any("held junk" in record.getMessage() for record in caplog.records)
    at = float(raw.hget(KEYS.kube_write_bucket, "at") or 0)
    assert at <= time.time() + 1


def test_a_lock_or_mark_without_ttl_gets_one(
    fleet: Fleet, redis_url: str, cluster: Cluster, raw: redis.Redis
) -> None:
    fleet = make_fleet(redis_url, cluster.api_client)
    fleet.store.create(Endpoint.new("web", parse_spec({"image": "nginx:1.27", "gpu_count": 0}), [REGION]))
    raw.set(KEYS.endpoint_lock("web"), "planted")  # no TTL: the endpoint would be skipped forever
    raw.set(KEYS.pending("web"), "1")  # no TTL: no message would ever be sent for it again
    run_cycle(fleet)
    assert 0 < raw.ttl(KEYS.pending("web")) <= fleet.settings.message_ttl_seconds
    with fleet.state.endpoint_lock("web", 60) as held:
        assert not held
    assert 0 < raw.ttl(KEYS.endpoint_lock("web")) <= fleet.settings.lock_lease_seconds
