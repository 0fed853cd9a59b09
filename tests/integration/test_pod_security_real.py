"""Pod Security admission on the real API server decides whether the fleet's pods may exist.

The real control plane runs kube-apiserver with its default admission plugins, PodSecurity among them.
Each test gets a namespace of its own labelled ``pod-security.kubernetes.io/enforce=<level>`` (the
fleet's ``INFERENCE_NAMESPACE`` points at it, so the shared ``gco-inference`` is never relabelled), with
the ServiceAccount inference pods run as. The fleet reconciles an endpoint there; the Deployment
controller's ReplicaSet then creates the pods, and the API server admits them, or refuses them with a
``FailedCreate`` the ReplicaSet reports as its ``ReplicaFailure`` condition.

- ``baseline``: the default pod (locked down, root allowed) and GCO's template
  (``INFERENCE_POD_LOCKDOWN=false``) both run, model-sync init container and canary included;
- ``restricted``: a record that opts in to non-root runs;
- and the test can fail: under ``restricted`` the default pod is refused for ``runAsNonRoot`` alone,
  GCO's template for every restricted check, and no pod exists;
- ``INFERENCE_POD_LOCKDOWN`` off keeps the template as it is; switched on later, each Deployment rolls
  exactly once.

kwok plays the kubelet, so what only a kubelet checks (an image whose USER is root under
``runAsNonRoot``) is not shown here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from gco_sandbox.controlplane import POD_SERVICE_ACCOUNT, raw
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering.deployment import MODEL_CLAIM
from gco_tasks.worker.fleet import Fleet
from tests.clusters import reset_real

from .harness import REGION, converge, make_fleet, run_cycle

pytestmark = pytest.mark.real_only  # (documentation: these tests take real_cluster directly)

S3_MODEL = "s3://gco-models-1/llama/"
CANARY = {"image": "vllm/vllm-openai:v0.7.0", "weight": 20}
PSA_LABEL = "pod-security.kubernetes.io/enforce"
#: What ``restricted`` checks that a pod can fail, as kube-apiserver's message names them.
RESTRICTED_CHECKS = (
    "allowPrivilegeEscalation",
    "unrestricted capabilities",
    "runAsNonRoot",
    "seccompProfile",
)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)
    return found


class Namespace:
    """A namespace with a Pod Security level, the inference ServiceAccount, and a fleet managing it."""

    def __init__(self, api_client: client.ApiClient, level: str) -> None:
        self.api_client = api_client
        self.name = f"psa-{level}-{uuid.uuid4().hex[:8]}"
        self.core = client.CoreV1Api(api_client)
        body = {"metadata": {"name": self.name, "labels": {PSA_LABEL: level}}}
        raw(self.core.create_namespace, body)
        raw(
            self.core.create_namespaced_service_account,
            self.name,
            {"metadata": {"name": POD_SERVICE_ACCOUNT[1]}},
        )
        self._bind_model_claim()

    def _bind_model_claim(self) -> None:
        """The model volume's claim (``efs-claim``), bound to a volume of its own. No volume binder runs
        here, so the binding is written as the binder would write it; the scheduler then places the pods
        (Pod Security checks the pod's volume type, a claim, which every level allows)."""
        volume = {
            "metadata": {"name": self.name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/tmp/{self.name}"},
                "claimRef": {"namespace": self.name, "name": MODEL_CLAIM},
            },
        }
        raw(self.core.create_persistent_volume, volume)
        claim = {
            "metadata": {"name": MODEL_CLAIM, "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": self.name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        raw(self.core.create_namespaced_persistent_volume_claim, self.name, claim)
        bound = {
            "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"], "capacity": {"storage": "1Gi"}}
        }
        raw(self.core.patch_namespaced_persistent_volume_claim_status, MODEL_CLAIM, self.name, bound)

    def fleet(self, redis_url: str, **settings: Any) -> Fleet:
        built = make_fleet(redis_url, self.api_client, inference_namespace=self.name, **settings)
        built.store.create_table()
        return built

    def deploy(self, fleet: Fleet, name: str, **spec: Any) -> None:
        fields = parse_spec({"image": "vllm/vllm-openai:v0.6.3", "model_source": S3_MODEL, **spec})
        fleet.store.create(Endpoint.new(name, fields, [REGION], namespace=self.name))

    def pods(self) -> list[dict[str, Any]]:
        return list(raw(self.core.list_namespaced_pod, self.name)["items"])

    def replica_failures(self) -> list[str]:
        """The ``ReplicaFailure`` messages of the namespace's ReplicaSets (pod creations refused)."""
        replica_sets = raw(client.AppsV1Api(self.api_client).list_namespaced_replica_set, self.name)["items"]
        return [
            condition["message"]
            for rs in replica_sets
            for condition in rs.get("status", {}).get("conditions") or []
            if condition["type"] == "ReplicaFailure"
        ]

    def replica_sets(self) -> dict[str, int]:
        """How many ReplicaSets each Deployment has (one per pod template it has run)."""
        replica_sets = raw(client.AppsV1Api(self.api_client).list_namespaced_replica_set, self.name)["items"]
        owners = [ref["name"] for rs in replica_sets for ref in rs["metadata"].get("ownerReferences") or []]
        return {owner: owners.count(owner) for owner in sorted(set(owners))}

    def failed_creates(self) -> list[str]:
        events = raw(self.core.list_namespaced_event, self.name)["items"]
        return [e["message"] for e in events if e.get("reason") == "FailedCreate"]

    def delete(self) -> None:
        reset_real(self.api_client, self.name)  # pods gone now: the fake GPUs are free for the next test
        raw(self.core.delete_namespace, self.name)
        raw(self.core.delete_persistent_volume, self.name)


@pytest.fixture()
def namespaces(real_api_client: client.ApiClient, dynamodb_url: str) -> Iterator[Callable[[str], Namespace]]:
    made: list[Namespace] = []

    def make(level: str) -> Namespace:
        made.append(Namespace(real_api_client, level))
        return made[-1]

    yield make
    for namespace in made:
        namespace.delete()


def region_state(fleet: Fleet, name: str) -> str | None:
    item = fleet.store.get_item(name) or {}
    state = item.get("region_status", {}).get(REGION, {}).get("state")
    return str(state) if state else None


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def serving(namespace: Namespace, fleet: Fleet, name: str, pods: int) -> bool:
    found = namespace.pods()
    return region_state(fleet, name) == "running" and len(found) == pods and all(map(ready, found))


@pytest.mark.parametrize("lockdown", [True, False], ids=["locked-down", "gco-template"])
def test_rendered_pods_pass_baseline(
    namespaces: Callable[[str], Namespace], redis_url: str, lockdown: bool
) -> None:
    namespace = namespaces("baseline")
    fleet = namespace.fleet(redis_url, inference_pod_lockdown=lockdown)
    namespace.deploy(fleet, "llm", canary=CANARY)
    converge(fleet, lambda: serving(namespace, fleet, "llm", pods=2))
    assert namespace.replica_failures() == [] and namespace.failed_creates() == []
    for pod in namespace.pods():
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["model-sync"]
        assert spec.get("automountServiceAccountToken") is (False if lockdown else None)
        assert ("securityContext" in spec["containers"][0]) is lockdown
    fleet.state.client.close()


def test_a_record_that_opts_in_to_non_root_passes_restricted(
    namespaces: Callable[[str], Namespace], redis_url: str
) -> None:
    namespace = namespaces("restricted")
    fleet = namespace.fleet(redis_url)
    namespace.deploy(fleet, "llm", canary=CANARY, run_as_non_root=True, run_as_user=1000)
    converge(fleet, lambda: serving(namespace, fleet, "llm", pods=2))
    assert namespace.replica_failures() == [] and namespace.failed_creates() == []
    for pod in namespace.pods():
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    fleet.state.client.close()


@pytest.mark.parametrize(
    "lockdown, violated",
    [(True, {"runAsNonRoot"}), (False, set(RESTRICTED_CHECKS))],
    ids=["locked-down", "gco-template"],
)
def test_pods_that_do_not_meet_restricted_are_refused(
    namespaces: Callable[[str], Namespace], redis_url: str, lockdown: bool, violated: set[str]
) -> None:
    """The proof that the tests above could fail: the same admission refuses what it should, naming
    exactly the checks the pod misses; the ReplicaSet creates no pod."""
    namespace = namespaces("restricted")
    fleet = namespace.fleet(redis_url, inference_pod_lockdown=lockdown)
    namespace.deploy(fleet, "llm")
    run_cycle(fleet)
    (message, *_) = wait_until(namespace.replica_failures, "the ReplicaSet's ReplicaFailure condition")
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert {check for check in RESTRICTED_CHECKS if check in message} == violated, message
    assert namespace.pods() == []
    assert region_state(fleet, "llm") != "running"
    fleet.state.client.close()


def test_switching_lockdown_on_later_rolls_each_endpoint_once(
    namespaces: Callable[[str], Namespace], redis_url: str
) -> None:
    """The cut-over path: with ``INFERENCE_POD_LOCKDOWN=false`` the template stays as it is cycle after
    cycle (one ReplicaSet); switched on, each Deployment rolls exactly once (a second ReplicaSet whose
    pods carry the fields), then stays."""
    namespace = namespaces("baseline")
    plain = namespace.fleet(redis_url, inference_pod_lockdown=False)
    namespace.deploy(plain, "llm", canary=CANARY)
    converge(plain, lambda: serving(namespace, plain, "llm", pods=2))
    for _ in range(3):
        run_cycle(plain)
    assert namespace.replica_sets() == {"llm": 1, "llm-canary": 1}
    locked = namespace.fleet(redis_url, inference_pod_lockdown=True)
    converge(locked, lambda: namespace.replica_sets() == {"llm": 2, "llm-canary": 2})
    converge(locked, lambda: serving(namespace, locked, "llm", pods=2))
    for _ in range(3):
        run_cycle(locked)
    assert namespace.replica_sets() == {"llm": 2, "llm-canary": 2}
    assert all(pod["spec"]["automountServiceAccountToken"] is False for pod in namespace.pods())
    plain.state.client.close()
    locked.state.client.close()
