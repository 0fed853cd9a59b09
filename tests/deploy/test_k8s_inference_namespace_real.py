"""k8s/inference-namespace on a real API server (issue 22, finding 5): ``kubectl apply -k`` of the
directory, renamed by an overlay to a namespace of the test's own (the shared gco-inference is never
relabelled), then what the API server enforces with it:

- Pod Security: the labels kustomize applied make the server refuse a pod that breaks ``baseline``, and
  admit the fleet's rendered pod (warning that it is not ``restricted``);
- RBAC: a token of the inference ServiceAccount is refused (403) everything a token of the fleet's worker
  (bound to the fleet's Role from k8s/base/rbac.yaml in the same namespace) may read;
- NetworkPolicies: the server validated and stored them as rendered (no CNI enforces them here);
- the namespace: ``kubectl delete -k`` removes the guard rails and leaves the namespace (the
  ValidatingAdmissionPolicy refuses its DELETE), and without the keep label it can be deleted.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from gco_sandbox.controlplane import ControlPlane, raw
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.rendering import RenderOptions, render_endpoint
from tests.integration.test_pod_security_real import wait_until

from .test_k8s_inference_namespace import DIRECTORY, INFERENCE_ACCOUNT, KEEP_LABEL, PSA, render

REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "k8s" / "base" / "rbac.yaml"
FLEET_ACCOUNT = "gco-tasks"


def kubectl(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(plane.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


class Guarded:
    """The directory applied to namespace ``name`` through an overlay in ``overlay``."""

    def __init__(self, plane: ControlPlane, api_client: client.ApiClient, overlay: Path) -> None:
        self.plane, self.api_client, self.overlay = plane, api_client, overlay
        self.name = f"guarded-{uuid.uuid4().hex[:8]}"
        self.core = client.CoreV1Api(api_client)
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"namespace: {self.name}\nresources:\n  - {os.path.relpath(DIRECTORY, overlay)}\n"
        )

    def namespace(self) -> dict[str, Any] | None:
        try:
            return dict(raw(self.core.read_namespace, self.name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def deletion_refused(self) -> bool:
        """A dry-run DELETE of the namespace is refused (admission runs on dry runs too)."""
        try:
            self.core.delete_namespace(self.name, dry_run="All")
        except ApiException as exc:
            assert exc.status in (403, 422), exc
            return True
        return False

    def token(self, account: str) -> str:
        request = {"spec": {"expirationSeconds": 3600}}
        answer = raw(self.core.create_namespaced_service_account_token, account, self.name, request)
        return str(answer["status"]["token"])

    def remove(self) -> None:
        if self.namespace() is not None:
            raw(self.core.patch_namespace, self.name, {"metadata": {"labels": {KEEP_LABEL: None}}})
            raw(self.core.delete_namespace, self.name)


@pytest.fixture()
def guarded(
    real_cluster: ControlPlane, real_api_client: client.ApiClient, tmp_path: Path
) -> Iterator[Guarded]:
    """The namespace exists before (as gco-inference does in a GCO region, with a label of its own); then
    ``kubectl apply -k`` of the overlay."""
    made = Guarded(real_cluster, real_api_client, tmp_path / "overlay")
    raw(made.core.create_namespace, {"metadata": {"name": made.name, "labels": {"team": "gco"}}})
    try:
        applied = kubectl(real_cluster, "apply", "-k", str(made.overlay))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        wait_until(made.deletion_refused, "the ValidatingAdmissionPolicy in force (a new one takes a moment)")
        yield made
    finally:
        made.remove()


def test_apply_merges_the_pod_security_labels_into_the_existing_namespace(guarded: Guarded) -> None:
    namespace = guarded.namespace()
    assert namespace is not None
    labels = namespace["metadata"]["labels"]
    assert {key: labels.get(key) for key in PSA} == PSA
    assert labels["team"] == "gco", "labels of the existing namespace are kept"
    assert labels[KEEP_LABEL] == "true"


def _pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_pod_security_refuses_a_pod_that_breaks_baseline(guarded: Guarded) -> None:
    """What only the labels make the server do: a privileged container, a hostPath volume and the host's
    network are refused at creation, naming each check."""
    spec = {
        "hostNetwork": True,
        "containers": [
            {
                "name": "c",
                "image": "nginx:1.27",
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    }
    with pytest.raises(ApiException) as refused:
        guarded.core.create_namespaced_pod(guarded.name, _pod("escape", spec))
    assert refused.value.status == 403
    message = str(refused.value.body)
    assert 'violates PodSecurity \\"baseline:latest\\"' in message, message
    for check in ("host namespaces", "privileged", "hostPath volumes"):
        assert check in message, (check, message)


def test_the_fleets_rendered_pod_is_admitted_as_the_inference_account(guarded: Guarded) -> None:
    """The fleet's pod as k8s/base configures it (the ServiceAccount shipped here) passes baseline, fits
    the LimitRange and quota, and is warned about restricted (it may run as root)."""
    options = RenderOptions(namespace=guarded.name, service_account=INFERENCE_ACCOUNT)
    spec = parse_spec({"image": "vllm/vllm-openai:v0.6.3", "gpu_count": 0})
    objects = render_endpoint(
        Endpoint.new("llm", spec, ["us-east-1"], namespace=guarded.name), "us-east-1", options
    )
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {**_pod("llm-0", template["spec"]), "metadata": {"name": "llm-0", **template["metadata"]}}
    created = guarded.core.create_namespaced_pod(guarded.name, pod, _preload_content=False)
    assert 200 <= created.status < 300
    assert "restricted:latest" in str(created.headers.get("Warning", "")), created.headers
    raw(guarded.core.delete_namespaced_pod, "llm-0", guarded.name, grace_period_seconds=0)


READS: dict[str, Callable[[client.ApiClient, str], Any]] = {
    "deployments": lambda api, ns: client.AppsV1Api(api).list_namespaced_deployment(ns),
    "services": lambda api, ns: client.CoreV1Api(api).list_namespaced_service(ns),
    "ingresses": lambda api, ns: client.NetworkingV1Api(api).list_namespaced_ingress(ns),
    "horizontalpodautoscalers": lambda api, ns: client.AutoscalingV2Api(
        api
    ).list_namespaced_horizontal_pod_autoscaler(ns),
    "replicasets": lambda api, ns: client.AppsV1Api(api).list_namespaced_replica_set(ns),
    "pods": lambda api, ns: client.CoreV1Api(api).list_namespaced_pod(ns),
}


def _bind_the_fleets_role(guarded: Guarded) -> None:
    """The fleet's Role (k8s/base/rbac.yaml) in the test's namespace, bound to a worker ServiceAccount."""
    rbac = client.RbacAuthorizationV1Api(guarded.api_client)
    (role,) = [obj for obj in yaml.safe_load_all(RBAC.read_text()) if obj and obj["kind"] == "Role"]
    raw(guarded.core.create_namespaced_service_account, guarded.name, {"metadata": {"name": FLEET_ACCOUNT}})
    raw(
        rbac.create_namespaced_role,
        guarded.name,
        {"metadata": {"name": FLEET_ACCOUNT}, "rules": role["rules"]},
    )
    binding = {
        "metadata": {"name": FLEET_ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FLEET_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": FLEET_ACCOUNT, "namespace": guarded.name}],
    }
    raw(rbac.create_namespaced_role_binding, guarded.name, binding)


def test_the_inference_account_cannot_read_what_the_fleets_can(guarded: Guarded) -> None:
    _bind_the_fleets_role(guarded)
    with (
        guarded.plane.token_client(guarded.token(FLEET_ACCOUNT)) as fleet,
        guarded.plane.token_client(guarded.token(INFERENCE_ACCOUNT)) as inference,
    ):
        for what, read in READS.items():
            read(fleet, guarded.name)  # the fleet's token may (raises if not)
            with pytest.raises(ApiException) as refused:
                read(inference, guarded.name)
            assert refused.value.status == 403, what
        for what, read in {
            "secrets": lambda api, ns: client.CoreV1Api(api).list_namespaced_secret(ns),
            "configmaps": lambda api, ns: client.CoreV1Api(api).list_namespaced_config_map(ns),
            "serviceaccounts": lambda api, ns: client.CoreV1Api(api).list_namespaced_service_account(ns),
        }.items():
            with pytest.raises(ApiException) as refused:
                read(inference, guarded.name)
            assert refused.value.status == 403, what


def test_the_server_stores_the_network_policies_as_rendered(guarded: Guarded) -> None:
    networking = client.NetworkingV1Api(guarded.api_client)
    stored = {
        item["metadata"]["name"]: item["spec"]
        for item in raw(networking.list_namespaced_network_policy, guarded.name)["items"]
    }
    shipped = {obj["metadata"]["name"]: obj["spec"] for obj in render() if obj["kind"] == "NetworkPolicy"}
    assert sorted(stored) == sorted(shipped)
    for name, spec in shipped.items():
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            for port in rule.get("ports", []):
                port.setdefault("protocol", "TCP")
        assert stored[name] == spec, name


def test_the_server_refuses_a_malformed_network_policy(guarded: Guarded) -> None:
    """The validation the test above relies on is real: an `except` outside its `cidr` is refused."""
    networking = client.NetworkingV1Api(guarded.api_client)
    body = {
        "metadata": {"name": "malformed"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["169.254.0.0/16"]}}]}],
        },
    }
    with pytest.raises(ApiException) as refused:
        networking.create_namespaced_network_policy(guarded.name, body)
    assert refused.value.status == 422


def test_delete_k_keeps_the_namespace(guarded: Guarded) -> None:
    """`kubectl delete -k` deletes what the directory ships: the Namespace's DELETE is refused (kustomize
    orders it first, while the policy exists), everything else goes."""
    deleted = kubectl(guarded.plane, "delete", "-k", str(guarded.overlay), "--wait=false")
    assert deleted.returncode != 0, "the Namespace's DELETE is refused"
    assert f"kubectl label namespace {guarded.name} gco.io/keep-namespace-" in deleted.stderr, deleted.stderr
    namespace = guarded.namespace()
    assert namespace is not None and namespace["status"]["phase"] == "Active"
    networking = client.NetworkingV1Api(guarded.api_client)
    assert raw(networking.list_namespaced_network_policy, guarded.name)["items"] == [], "the rest is deleted"


def test_the_namespace_can_be_deleted_once_its_label_is_removed(guarded: Guarded) -> None:
    with pytest.raises(ApiException) as refused:
        guarded.core.delete_namespace(guarded.name)
    assert refused.value.status in (403, 422) and KEEP_LABEL in str(refused.value.body)
    raw(guarded.core.patch_namespace, guarded.name, {"metadata": {"labels": {KEEP_LABEL: None}}})
    raw(guarded.core.delete_namespace, guarded.name)
    namespace = guarded.namespace()
    assert namespace is None or namespace["status"]["phase"] == "Terminating"


def test_a_server_dry_run_names_the_running_pods_baseline_would_refuse(
    real_cluster: ControlPlane, real_api_client: client.ApiClient, tmp_path: Path
) -> None:
    """What docs/security.md tells the operator to run first: `kubectl apply --dry-run=server -k` against a
    namespace that already runs a pod baseline refuses names that pod, and changes nothing."""
    made = Guarded(real_cluster, real_api_client, tmp_path / "overlay")
    raw(made.core.create_namespace, {"metadata": {"name": made.name}})
    try:
        spec = {"containers": [{"name": "c", "image": "nginx:1.27", "securityContext": {"privileged": True}}]}
        raw(made.core.create_namespaced_pod, made.name, _pod("privileged-one", spec))
        dry = kubectl(real_cluster, "apply", "--dry-run=server", "-k", str(made.overlay))
        assert dry.returncode == 0, dry.stderr
        assert (
            f'existing pods in namespace "{made.name}" violate the new PodSecurity enforce level'
            in dry.stderr
        )
        assert "privileged-one: privileged" in dry.stderr, dry.stderr
        namespace = made.namespace()
        assert namespace is not None and KEEP_LABEL not in namespace["metadata"].get("labels", {})
    finally:
        made.remove()
