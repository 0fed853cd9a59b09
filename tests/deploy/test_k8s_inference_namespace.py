"""k8s/inference-namespace: the inference namespace's guard rails, rendered by `kubectl kustomize` and
validated strictly: its Pod Security labels (on a Namespace object that only labels the existing one, kept
from deletion by a ValidatingAdmissionPolicy), ResourceQuota, LimitRange, NetworkPolicies and the
inference pods' own ServiceAccount. test_k8s_inference_namespace_real.py applies it to kube-apiserver.

The NetworkPolicies are checked by what they allow (``allowed`` evaluates them as the NetworkPolicy API
defines: a pod selected by a policy of a type gets only what some such policy allows), because no CNI
enforces them on the test's control plane.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity as quantity_value

from gco_tasks.core.records import Endpoint
from gco_tasks.core.rendering import RenderOptions, render_endpoint

from .test_k8s_manifests import Region, _kubectl

REPO = Path(__file__).resolve().parents[2]
DIRECTORY = REPO / "k8s" / "inference-namespace"
NAMESPACE = "gco-inference"
INFERENCE_ACCOUNT = "gco-inference-endpoints"
PSA = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
KEEP_LABEL = "gco.io/keep-namespace"
#: The example source of the load balancer's traffic (the VPC's CIDR) the shipped policy admits.
LOAD_BALANCER = "10.0.0.0/16"

Obj = dict[str, Any]


def render(directory: Path = DIRECTORY) -> list[Obj]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    return render()


def of_kind(rendered: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in rendered if obj["kind"] == kind]


def one(rendered: list[Obj], kind: str) -> Obj:
    (found,) = of_kind(rendered, kind)
    return found


def test_what_the_directory_ships(rendered: list[Obj]) -> None:
    kinds = sorted(obj["kind"] for obj in rendered)
    assert kinds == sorted(
        ["Namespace", "ResourceQuota", "LimitRange", "ServiceAccount"]
        + ["NetworkPolicy"] * 3
        + ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    )
    cluster_scoped = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for obj in rendered:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    # kustomize orders the Namespace first: `kubectl delete -k` reaches it while the policy keeping it exists
    assert rendered[0]["kind"] == "Namespace"


def test_pod_security_labels_are_applied_by_kustomize(rendered: list[Obj]) -> None:
    """Issue 22, finding 5: the labels were a documented command, not applied. The Namespace object carries
    them (and nothing but labels: applying it to the existing namespace merges them in)."""
    namespace = one(rendered, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert set(namespace) == {"apiVersion", "kind", "metadata"}
    assert set(namespace["metadata"]) == {"name", "labels"}
    assert namespace["metadata"]["labels"] == {**PSA, KEEP_LABEL: "true"}


def test_the_namespace_is_kept_from_deletion(rendered: list[Obj]) -> None:
    """`kubectl delete -k` must never remove the namespace: a ValidatingAdmissionPolicy bound to namespaces
    labelled gco.io/keep-namespace=true refuses every DELETE of one (the real server applies it)."""
    policy, binding = (
        one(rendered, "ValidatingAdmissionPolicy"),
        one(rendered, "ValidatingAdmissionPolicyBinding"),
    )
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == ([""], ["namespaces"], ["DELETE"])
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["objectSelector"] == {"matchLabels": {KEEP_LABEL: "true"}}


def test_quota_caps_compute_and_devices_and_forbids_exposed_services(rendered: list[Obj]) -> None:
    hard = one(rendered, "ResourceQuota")["spec"]["hard"]
    for key in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "pods"):
        assert quantity_value(str(hard[key])) > 0, key
    for device in ("nvidia.com/gpu", "aws.amazon.com/neuron"):
        assert quantity_value(str(hard[f"requests.{device}"])) > 0, "extended resources: requests only"
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"


def test_limit_range_defaults_fit_under_its_maximum(rendered: list[Obj]) -> None:
    (limits,) = one(rendered, "LimitRange")["spec"]["limits"]
    assert limits["type"] == "Container"
    for resource in ("cpu", "memory"):
        request = quantity_value(limits["defaultRequest"][resource])
        default = quantity_value(limits["default"][resource])
        assert 0 < request <= default <= quantity_value(limits["max"][resource]), resource


def test_the_fleets_default_endpoint_is_admitted_by_the_limit_range(rendered: list[Obj]) -> None:
    """Containers the fleet renders with default resources (and the model-sync init container) stay under
    the LimitRange's maximum, so a plain record is never refused by the namespace's own guard rails."""
    (limits,) = one(rendered, "LimitRange")["spec"]["limits"]
    item = {
        "endpoint_name": "plain",
        "target_regions": ["us-east-1"],
        "spec": {"image": "vllm/vllm-openai:v0.6.3", "gpu_count": 1, "model_source": "s3://bucket-1/m/"},
    }
    objects = render_endpoint(Endpoint.from_item(item), "us-east-1", RenderOptions())
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    assert len(containers) == 2, "the inference container and the model-sync init container"
    for container in containers:
        for resource in ("cpu", "memory"):
            limit = container["resources"]["limits"][resource]
            assert quantity_value(limit) <= quantity_value(limits["max"][resource]), container["name"]


# --------------------------------------------------------------------------- identity


def test_inference_pods_get_their_own_identity_without_the_fleets_role(rendered: list[Obj]) -> None:
    """Issue 22, finding 5: every pod ran as gco-service-account with its IRSA role. The fleet's base
    configuration names a ServiceAccount shipped here, with no IAM role, no token mounted, and no
    RoleBinding anywhere in k8s/ naming it."""
    account = one(rendered, "ServiceAccount")
    assert account["metadata"]["name"] == INFERENCE_ACCOUNT
    assert "annotations" not in account["metadata"], "no eks.amazonaws.com/role-arn by default"
    assert account["automountServiceAccountToken"] is False
    for region in ("us-east-1", "eu-west-1"):
        fleet = Region(region)
        assert fleet.config["data"]["INFERENCE_SERVICE_ACCOUNT"] == INFERENCE_ACCOUNT
        (fleet_account,) = fleet.of_kind("ServiceAccount")
        assert fleet_account["metadata"]["name"] != INFERENCE_ACCOUNT
        subjects = [s for b in fleet.of_kind("RoleBinding") for s in b["subjects"]]
        assert all(subject["name"] != INFERENCE_ACCOUNT for subject in subjects)
    assert not of_kind(rendered, "RoleBinding") and not of_kind(rendered, "Role")


# --------------------------------------------------------------------------- network


def _selects(policy: Obj) -> bool:
    """Every policy here selects every pod of the namespace (inference pods carry varying labels)."""
    return policy["spec"]["podSelector"] == {}


def _peer_admits(peer: Obj, address: str) -> bool:
    assert set(peer) == {"ipBlock"}, "peers by address only (the ALB and the outside are not pods)"
    block = peer["ipBlock"]
    ip = ipaddress.ip_address(address)
    cidr = ipaddress.ip_network(block["cidr"])
    if ip.version != cidr.version or ip not in cidr:
        return False
    return not any(
        ip in ipaddress.ip_network(excluded)
        for excluded in block.get("except", [])
        if ipaddress.ip_network(excluded).version == ip.version
    )


def _port_admits(port: Obj, protocol: str, number: int) -> bool:
    if port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in port:
        return True
    end = port.get("endPort", port["port"])
    return bool(port["port"] <= number <= end)


def allowed(policies: list[Obj], direction: str, address: str, protocol: str, port: int) -> bool:
    """Whether a pod of the namespace may receive from (``Ingress``) or send to (``Egress``) ``address``
    on ``protocol``/``port``: the NetworkPolicy API's semantics for ipBlock peers and ports."""
    applying = [p for p in policies if _selects(p) and direction in p["spec"]["policyTypes"]]
    if not applying:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in applying:
        for rule in policy["spec"].get(key, []):
            peers, ports = rule.get(peers_key), rule.get("ports")
            peer_ok = peers is None or any(_peer_admits(peer, address) for peer in peers)
            port_ok = ports is None or any(_port_admits(entry, protocol, port) for entry in ports)
            if peer_ok and port_ok:
                return True
    return False


INGRESS_CASES = [
    ("the ALB (VPC address), the record's container port", "10.0.3.17", "TCP", 8000, True),
    ("the ALB's health check on another port", "10.0.130.4", "TCP", 8080, True),
    ("anything outside the load balancer's source", "192.168.7.7", "TCP", 8000, False),
    ("a pod of another network (another cluster, a peered VPC)", "172.16.0.9", "TCP", 8000, False),
    ("UDP from the ALB's addresses", "10.0.3.17", "UDP", 8000, False),
]


@pytest.mark.parametrize(
    ("what", "address", "protocol", "port", "expected"), INGRESS_CASES, ids=[c[0] for c in INGRESS_CASES]
)
def test_ingress_only_from_the_load_balancer(
    rendered: list[Obj], what: str, address: str, protocol: str, port: int, expected: bool
) -> None:
    """Issue 22, finding 5: inference pods accepted connections from every pod (another endpoint's
    included). In: the load balancer's source addresses only, on any TCP port (the record picks it)."""
    policies = of_kind(rendered, "NetworkPolicy")
    assert allowed(policies, "Ingress", address, protocol, port) is expected, what


EGRESS_CASES = [
    ("the instance metadata service (the node's IAM role)", "169.254.169.254", "TCP", 80, False),
    ("the instance metadata service on 443", "169.254.169.254", "TCP", 443, False),
    ("the instance metadata service over IPv6", "fd00:ec2::254", "TCP", 80, False),
    ("the instance metadata service over IPv6 on 443", "fd00:ec2::254", "TCP", 443, False),
    ("EKS Pod Identity's agent", "169.254.170.23", "TCP", 80, False),
    ("the fleet's Redis (ElastiCache in the VPC)", "10.0.40.12", "TCP", 6379, False),
    ("Redis with TLS on ElastiCache Serverless's second port", "10.0.40.12", "TCP", 6380, False),
    ("the fleet's Flower", "10.0.8.21", "TCP", 5555, False),
    ("a worker's metrics port", "10.0.8.22", "TCP", 9808, False),
    ("another endpoint's server port", "10.0.9.9", "TCP", 8000, False),
    ("S3 (the model source of the sync)", "52.216.8.37", "TCP", 443, True),
    ("the Hugging Face Hub", "18.244.202.60", "TCP", 443, True),
    ("an S3 interface endpoint in the VPC", "10.0.50.5", "TCP", 443, True),
    ("cluster DNS (UDP)", "172.20.0.10", "UDP", 53, True),
    ("cluster DNS (TCP)", "172.20.0.10", "TCP", 53, True),
    ("the VPC's resolver at its link-local address", "169.254.169.253", "UDP", 53, True),
]


@pytest.mark.parametrize(
    ("what", "address", "protocol", "port", "expected"), EGRESS_CASES, ids=[c[0] for c in EGRESS_CASES]
)
def test_egress_dns_and_https_but_never_metadata_or_redis(
    rendered: list[Obj], what: str, address: str, protocol: str, port: int, expected: bool
) -> None:
    """Issue 22, finding 5: inference pods reached the instance metadata service (the node's IAM role),
    the fleet's Redis on 6379 and every other endpoint. Out: DNS, and HTTPS (where models come from) to
    any address that is not link-local."""
    policies = of_kind(rendered, "NetworkPolicy")
    assert allowed(policies, "Egress", address, protocol, port) is expected, what


def test_a_default_deny_covers_every_pod_both_ways(rendered: list[Obj]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    deny = [p for p in policies if "ingress" not in p["spec"] and "egress" not in p["spec"]]
    assert len(deny) == 1 and _selects(deny[0])
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert all(_selects(policy) for policy in policies)


def test_the_load_balancer_source_is_the_documented_example(rendered: list[Obj]) -> None:
    """The one value an operator must fit (with the quota's sizes): docs/security.md and the file say so."""
    sources = [
        peer["ipBlock"]["cidr"]
        for policy in of_kind(rendered, "NetworkPolicy")
        for rule in policy["spec"].get("ingress", [])
        for peer in rule["from"]
    ]
    assert sources == [LOAD_BALANCER]
    assert LOAD_BALANCER in (DIRECTORY / "networkpolicy.yaml").read_text()
    guide = (REPO / "docs" / "security.md").read_text()
    assert "kubectl apply -k k8s/inference-namespace" in guide and LOAD_BALANCER in guide
