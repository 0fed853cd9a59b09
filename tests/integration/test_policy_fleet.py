"""The region policy through the fleet: a record over a cap, or with a keyless toleration, reads
``error`` in the region naming the field, the cap and the setting, and nothing is applied or deleted
because of it; a fleet whose settings allow it serves the same record. Against a private redis-server,
moto's DynamoDB over HTTP and the stand-in API server (what the fleet does here is its own decision, no
Kubernetes semantics are involved; Pod Security on the real server is in ``test_pod_security_real.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from gco_tasks.core.conventions import endpoint_selector
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, converge, make_fleet, run_cycle

pytestmark = pytest.mark.standin_only

WILDCARD = [{"operator": "Exists"}]


def deploy(fleet: Fleet, name: str = "demo", **spec: Any) -> None:
    fields = {"image": "vllm/vllm-openai:v0.6.3", "replicas": 2, **spec}
    fleet.store.create(Endpoint.new(name, parse_spec(fields), [REGION]))


def region_state(fleet: Fleet, name: str = "demo") -> dict[str, Any]:
    item = fleet.store.get_item(name)
    assert item is not None
    return dict(item["region_status"].get(REGION, {}))


def live(fleet: Fleet, name: str = "demo") -> dict[tuple[str, str], str]:
    """(kind, name) -> resourceVersion of the endpoint's objects: any write or delete changes it."""
    found = fleet.cluster.list_objects(endpoint_selector(name))
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"] for o in found}


def test_an_edit_over_a_cap_is_an_error_and_the_running_objects_stay(fleet: Fleet) -> None:
    deploy(fleet)
    converge(fleet, lambda: region_state(fleet).get("state") == "running")
    before = live(fleet)
    assert len(before) == 3
    fleet.store.update_spec("demo", lambda spec: spec.with_changes(replicas=50, gpu_count=20))
    (result,) = run_cycle(fleet)
    assert (result["result"], result["actions"]) == ("invalid", [])
    status = region_state(fleet)
    assert status["state"] == "error"
    assert (
        "spec.replicas: 50 is above this region's cap of 32 replicas (MAX_REPLICAS_PER_ENDPOINT)"
        in (status["error"])
    )
    assert (
        "spec.gpu_count: 20 is above this region's cap of 16 devices per pod (MAX_GPUS_PER_POD)"
        in (status["error"])
    )
    run_cycle(fleet)
    assert live(fleet) == before, "nothing applied, nothing deleted"
    fleet.store.update_spec("demo", lambda spec: spec.with_changes(replicas=3, gpu_count=1))
    converge(fleet, lambda: region_state(fleet).get("state") == "running")


def test_a_keyless_toleration_is_refused_unless_the_region_allows_it(
    fleet: Fleet, cluster: Cluster, redis_url: str
) -> None:
    deploy(fleet, tolerations=WILDCARD)
    (result,) = run_cycle(fleet)
    assert result["result"] == "invalid"
    status = region_state(fleet)
    assert status["state"] == "error"
    assert "spec.tolerations[0]: has no key, so it tolerates every taint" in status["error"]
    assert "ALLOW_WILDCARD_TOLERATIONS=true" in status["error"]
    assert live(fleet) == {}, "nothing created"
    allowing = make_fleet(redis_url, cluster.api_client, allow_wildcard_tolerations=True)
    try:
        run_cycle(allowing)
        assert set(live(allowing)) == {
            ("Deployment", "demo"),
            ("Service", "demo"),
            ("Ingress", "inference-demo"),
        }
        deployment = next(
            o for o in allowing.cluster.list_objects(endpoint_selector("demo")) if o["kind"] == "Deployment"
        )
        assert {"operator": "Exists"} in deployment["spec"]["template"]["spec"]["tolerations"]
    finally:
        allowing.state.client.close()
