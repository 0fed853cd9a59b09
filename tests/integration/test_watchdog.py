"""The watchdog against the real parts: an endpoint stuck at 0 ready replicas loses its Ingress past the
threshold, reconcile does not put it back while it is unready, and it returns once the endpoint recovers.
Its clocks live in Redis, so a fresh worker process (a new ``Fleet``) sees them. Time is passed as
``now=`` (as beat's runs would see it), never slept, so the threshold is crossed exactly: one second
before it nothing is withheld, one second after it the Ingress goes. On both servers: on the real one
the ``crashloop`` image's pods run in CrashLoopBackOff (kwok), never Ready."""

from __future__ import annotations

import time

from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.watchdog import watchdog
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, make_fleet, run_cycle


def kinds(fleet: Fleet, name: str) -> set[str]:
    return {obj["kind"] for obj in fleet.cluster.list_objects(endpoint_selector(name))}


THRESHOLD = 60


def test_watchdog_withholds_and_restores_the_ingress(fleet: Fleet, redis_url: str, cluster: Cluster) -> None:
    kube_client = cluster.api_client
    fleet = make_fleet(redis_url, kube_client, inference_unhealthy_threshold_seconds=THRESHOLD)
    fleet.store.create(Endpoint.new("sick", parse_spec({"image": "example/crashloop:1"}), [REGION]))
    fleet.store.create(Endpoint.new("halted", parse_spec({"image": "nginx:1.27"}), [REGION]))
    fleet.store.update_desired_state("halted", "stopped")
    run_cycle(fleet)
    assert "Ingress" in kinds(fleet, "sick")

    started = time.time()
    first = watchdog(fleet, now=started)
    assert "sick" in first.unready and "halted" not in first.unready
    assert first.withheld == []
    # A restarted worker: new adapters, same Redis clocks.
    restarted = make_fleet(redis_url, kube_client, inference_unhealthy_threshold_seconds=THRESHOLD)
    assert watchdog(restarted, now=started + THRESHOLD - 1).withheld == [], "not before the threshold"
    assert "Ingress" in kinds(fleet, "sick")
    second = watchdog(restarted, now=started + THRESHOLD + 1)
    assert second.withheld == ["sick"]
    assert "Ingress" not in kinds(fleet, "sick")

    results = {r["endpoint"]: r for r in run_cycle(fleet)}
    assert "Ingress" not in kinds(fleet, "sick"), "reconcile must not restore the Ingress while unready"
    assert "withheld" in (fleet.store.get_item("sick") or {})["region_status"][REGION].get("error", "")
    assert results["sick"]["actions"] == []

    fleet.store.update_spec("sick", lambda spec: spec.with_changes(image="nginx:1.27"), desired_state=None)
    deadline = time.monotonic() + 60
    while "Ingress" not in kinds(fleet, "sick"):
        assert time.monotonic() < deadline, "Ingress not restored after recovery"
        run_cycle(fleet)
        time.sleep(0.2)
    assert watchdog(fleet).withheld == []
    assert fleet.state.withheld() == set()
