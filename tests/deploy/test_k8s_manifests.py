"""k8s/: what a region runs, rendered by `kubectl kustomize` per overlay (the kubectl 1.36 that `make
controlplane` builds) and checked object by object. test_k8s_real_server.py applies it to kube-apiserver.

Every rendered object is validated strictly against Kubernetes 1.30's schemas; the rest checks what
the schemas cannot: the Role grants exactly what the reconciler uses, every container is locked down,
the worker consumes its region's queue, its liveness probe really reads the heartbeat file, the
settings in the generated ConfigMap load as gco-tasks settings, credentials only come from Secrets, the
fleet's image is pinned by digest in every overlay, only Prometheus may reach Flower, and only the
monitoring namespace the worker's and beat's metrics port.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gco_sandbox.controlplane import ControlPlaneMissing, find_binaries
from gco_tasks.core.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = REPO / "k8s" / "overlays"
REGIONS = sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())

FLEET_NS = "gco-system"
UID = 10001
SETTING_VARIABLES = {name.upper() for name in Settings.model_fields}
COMPONENTS = ("worker", "beat", "flower")
VERBS = {"get", "list", "create", "patch", "delete"}
MANAGED = {
    ("apps", "deployments"),
    ("", "services"),
    ("networking.k8s.io", "ingresses"),
    ("autoscaling", "horizontalpodautoscalers"),
}
#: Kubernetes Events about what the fleet did (gco_tasks/adapters/events.py): created, and a repeat's
#: series patched.
EVENTS = {("events.k8s.io", "events", verb) for verb in ("create", "patch")}
#: Read only, for an unfinished rollout (gco_tasks/flows/reconcile_io.py): the newest ReplicaSet and its pods.
ROLLOUT_READS = {
    (group, resource, verb)
    for group, resource in (("apps", "replicasets"), ("", "pods"))
    for verb in ("get", "list")
}
HEARTBEAT_PROBE = [
    "sh",
    "-c",
    'test $(( $(date +%s) - $(stat -c %Y "$WORKER_HEARTBEAT_FILE") )) -lt "$LIVENESS_MAX_AGE_SECONDS"',
]

Obj = dict[str, Any]


def _kubectl() -> str:
    """The kubectl ``make controlplane`` built (1.36, kustomize v5), never whatever is on PATH."""
    try:
        return str(find_binaries().kubectl)
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@functools.cache
def _render(region: str) -> tuple[Obj, ...]:
    overlay = OVERLAYS / region
    result = subprocess.run(
        [_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize k8s/overlays/{region} failed:\n{result.stderr}"
    assert "deprecated" not in result.stderr.lower(), result.stderr
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


class Region:
    """One overlay's rendered objects."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.objects = _render(name)

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name} in {self.name}, found {len(found)}"
        return found[0]

    def deployment(self, component: str) -> Obj:
        return self.get("Deployment", f"gco-tasks-{component}")

    def container(self, component: str) -> Obj:
        containers = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return dict(containers[0])

    @property
    def config(self) -> Obj:
        (config_map,) = self.of_kind("ConfigMap")
        return config_map


@pytest.fixture(params=REGIONS)
def region(request: pytest.FixtureRequest) -> Region:
    return Region(request.param)


def _matches(selector: Obj, labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are expected"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _env(region: Region, container: Obj) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env), Secrets shown as refs."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == region.config["metadata"]["name"]
        env.update(region.config["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def _expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_both_example_regions_have_an_overlay() -> None:
    assert {"us-east-1", "eu-west-1"} <= set(REGIONS)


def test_every_object_is_valid_kubernetes_1_30(region: Region) -> None:
    for obj in region.objects:
        try:
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(part) for part in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where or '.'}: {exc.message}")
    kinds = sorted(obj["kind"] for obj in region.objects)
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service"]
        + ["Deployment"] * 3
        + ["PodDisruptionBudget"] * 2
        + ["NetworkPolicy"] * 3
    ), "no cluster-scoped objects (Namespace, ClusterRole...) and no Secret are shipped"


def test_fleet_lives_in_gco_system_and_rbac_in_the_inference_namespace(region: Region) -> None:
    inference_ns = region.config["data"]["INFERENCE_NAMESPACE"]
    assert inference_ns == "gco-inference"
    for obj in region.objects:
        expected = inference_ns if obj["kind"] in {"Role", "RoleBinding"} else FLEET_NS
        assert obj["metadata"]["namespace"] == expected, obj["metadata"]["name"]


def test_role_grants_exactly_what_the_reconciler_uses(region: Region) -> None:
    (role,) = region.of_kind("Role")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames / nonResourceURLs"
        granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    managed = {(group, resource, verb) for group, resource in MANAGED for verb in VERBS}
    assert granted == managed | EVENTS | ROLLOUT_READS
    assert not {"watch", "update", "*"} & {verb for _, _, verb in granted}

    (binding,) = region.of_kind("RoleBinding")
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gco-tasks"}
    assert binding["roleRef"] == role_ref
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gco-tasks", "namespace": FLEET_NS}]


def test_only_the_worker_gets_the_irsa_service_account(region: Region) -> None:
    (account,) = region.of_kind("ServiceAccount")
    assert account["metadata"]["name"] == "gco-tasks"
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(rf"arn:aws:iam::\d{{12}}:role/gco-tasks-{region.name}", arn)

    worker = region.deployment("worker")["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == "gco-tasks"
    assert worker.get("automountServiceAccountToken", True) is True
    for component in ("beat", "flower"):
        pod = region.deployment(component)["spec"]["template"]["spec"]
        assert "serviceAccountName" not in pod
        assert pod["automountServiceAccountToken"] is False, f"{component} talks to Redis only"


def test_generated_config_map_loads_as_gco_tasks_settings(region: Region) -> None:
    config = region.config
    name = config["metadata"]["name"]
    assert re.fullmatch(r"gco-tasks-config-[a-z0-9]{10}", name), "hash suffix rolls pods on change"
    data = config["data"]
    unknown = set(data) - SETTING_VARIABLES
    assert not unknown, f"not read by gco_tasks/core/config.py: {unknown}"
    assert "REDIS_URL" not in data, "the Redis URL (may hold a password) comes from a Secret"
    settings = load_settings({**data, "REDIS_URL": "rediss://example:6379/0"})
    assert settings.region == region.name
    assert settings.cluster_name == f"gco-{region.name}"
    assert settings.inference_endpoints_table_name == "gco-inference-endpoints"


def test_processes_run_the_right_celery_commands(region: Region) -> None:
    worker = region.container("worker")
    assert worker["command"] == ["celery"]
    args = [_expand(arg, _env(region, worker)) for arg in worker["args"]]
    assert args == [
        "-A", "gco_tasks", "worker", "-Q", f"gco.{region.name}", "--loglevel", "INFO",
        "--without-mingle", "--without-gossip", "--concurrency", "4",
    ]  # fmt: skip
    beat = region.container("beat")
    assert [*beat["command"], *beat["args"]] == ["celery", "-A", "gco_tasks", "beat", "--loglevel", "INFO"]
    flower = region.container("flower")
    assert [*flower["command"], *flower["args"]] == ["python", "-m", "gco_tasks.flower", "--port=5555"]
    assert region.deployment("worker")["spec"]["replicas"] == 2
    assert region.deployment("beat")["spec"]["replicas"] == 2, "RedBeat's lock makes a second beat safe"


def test_worker_liveness_reads_the_heartbeat_file(region: Region) -> None:
    worker = region.container("worker")
    assert worker["livenessProbe"]["exec"]["command"] == HEARTBEAT_PROBE
    heartbeat = _env(region, worker)["WORKER_HEARTBEAT_FILE"]
    assert any(item["name"] == "WORKER_HEARTBEAT_FILE" for item in worker["env"]), "set explicitly"
    assert heartbeat.startswith("/tmp/"), "the only writable path is the /tmp emptyDir"
    assert _env(region, worker)["LIVENESS_MAX_AGE_SECONDS"] == "60"
    probe = worker["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60
    assert "readinessProbe" not in worker, "a worker serves no traffic"


def test_heartbeat_probe_command_fails_on_a_stale_or_missing_file(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"

    def probe() -> int:
        env = {
            "PATH": os.environ["PATH"],
            "WORKER_HEARTBEAT_FILE": str(heartbeat),
            "LIVENESS_MAX_AGE_SECONDS": "60",
        }
        return subprocess.run(HEARTBEAT_PROBE, env=env, capture_output=True, timeout=10).returncode

    assert probe() != 0, "no heartbeat yet"
    heartbeat.touch()
    assert probe() == 0
    stale = time.time() - 120
    os.utime(heartbeat, (stale, stale))
    assert probe() != 0


def test_worker_shutdown_outlasts_the_task_time_limit(region: Region) -> None:
    spec = region.deployment("worker")["spec"]
    limit = int(region.config["data"]["TASK_TIME_LIMIT_SECONDS"])
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > limit
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_every_container_is_locked_down(region: Region) -> None:
    for deployment in region.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        assert _matches(deployment["spec"]["selector"], template["metadata"]["labels"]), name
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == UID, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "privileged" not in context, where
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) >= {"cpu", "memory"}, f"{where} {kind}"
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in empty_dirs, f"{where}: /tmp must be an emptyDir"
            image = container["image"]
            registry = rf"\d{{12}}\.dkr\.ecr\.{region.name}\.amazonaws\.com"
            assert re.fullmatch(rf"{registry}/gco-tasks@sha256:[0-9a-f]{{64}}", image), f"{where}: by digest"


def test_credentials_come_only_from_the_referenced_secrets(region: Region) -> None:
    assert not region.of_kind("Secret"), "Secrets are created by the operator, never committed"
    for component in COMPONENTS:
        env = _env(region, region.container(component))
        assert env["REDIS_URL"] == "<secret gco-tasks-redis/url>", component
        if component == "flower":
            assert env["FLOWER_BASIC_AUTH"] == "<secret gco-tasks-flower/basic-auth>"
            assert "FLOWER_UNAUTHENTICATED_API" not in env
        else:
            assert "FLOWER_BASIC_AUTH" not in env


def test_flower_is_served_probed_and_scraped(region: Region) -> None:
    flower = region.container("flower")
    assert flower["ports"] == [{"name": "http", "containerPort": 5555, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert flower[probe]["httpGet"] == {"path": "/healthcheck", "port": "http"}, probe
    pod_labels = region.deployment("flower")["spec"]["template"]["metadata"]["labels"]
    service = region.get("Service", "gco-tasks-flower")
    assert _matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
    assert service["spec"]["type"] == "ClusterIP", "not exposed outside the cluster by default"
    port = {"name": "http", "port": 5555, "targetPort": "http", "protocol": "TCP"}
    assert service["spec"]["ports"] == [port]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "5555"


def test_disruption_budgets_keep_a_worker_and_a_beat(region: Region) -> None:
    budgets = {pdb["metadata"]["name"]: pdb for pdb in region.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {"gco-tasks-worker", "gco-tasks-beat"}
    for name, budget in budgets.items():
        deployment = region.get("Deployment", name)
        assert budget["spec"]["minAvailable"] == 1
        assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"], "drains must stay possible"
        assert _matches(budget["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])


def _ports(rules: list[Obj]) -> set[tuple[str, int]]:
    found = set()
    for rule in rules:
        assert set(rule) <= {"ports", "from"}, "restricted by port (and source); no ipBlock"
        found |= {(port["protocol"], port["port"]) for port in rule["ports"]}
    return found


PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def test_network_policies_allow_only_what_each_process_uses(region: Region) -> None:
    dns = {("UDP", 53), ("TCP", 53)}
    redis = {("TCP", 6379)}
    metrics = {("TCP", load_settings(region.config["data"]).metrics_port)}
    expected = {
        "worker": (metrics, dns | redis | {("TCP", 443), ("TCP", 6443)}),
        "beat": (metrics, dns | redis),
        "flower": ({("TCP", 5555)}, dns | redis),
    }
    policies = region.of_kind("NetworkPolicy")
    for component, (ingress, egress) in expected.items():
        labels = region.deployment(component)["spec"]["template"]["metadata"]["labels"]
        selecting = [p for p in policies if _matches(p["spec"]["podSelector"], labels)]
        assert len(selecting) == 1, component
        spec = selecting[0]["spec"]
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"], component
        assert _ports(spec.get("ingress", [])) == ingress, component
        assert _ports(spec["egress"]) == egress, component
        assert all("from" not in rule for rule in spec["egress"]), component


def test_worker_and_beat_expose_the_metrics_port_of_the_settings(region: Region) -> None:
    port = load_settings(region.config["data"]).metrics_port
    assert region.config["data"]["METRICS_PORT"] == str(port) and port > 0
    for component in ("worker", "beat"):
        container = region.container(component)
        assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        annotations = region.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, f"{component}: annotation-based scrapers (CloudWatch agent) find the exporter"
    multiproc = _env(region, region.container("worker"))["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc.startswith("/tmp/"), "the only writable path is the /tmp emptyDir"
    assert "PROMETHEUS_MULTIPROC_DIR" not in _env(region, region.container("beat")), "beat is one process"


def test_only_prometheus_in_the_monitoring_namespace_reaches_flower(region: Region) -> None:
    """Not every pod in the cluster: inference pods run images chosen by records. Every ingress rule
    that selects Flower names one source, by namespace and pod labels together (one peer, both selectors,
    which Kubernetes ANDs); a rule without `from` would admit every source."""
    labels = region.deployment("flower")["spec"]["template"]["metadata"]["labels"]
    (policy,) = [p for p in region.of_kind("NetworkPolicy") if _matches(p["spec"]["podSelector"], labels)]
    rules = policy["spec"]["ingress"]
    assert rules and all(rule.get("from") == [PROMETHEUS] for rule in rules), rules


MONITORING_NAMESPACE = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
POLICIES = REPO / "k8s" / "base" / "networkpolicy.yaml"


def test_only_the_monitoring_namespace_reaches_the_metrics_port(region: Region) -> None:
    """Issue 22, finding 8: the worker's and beat's metrics port admitted every pod of the cluster
    (inference pods run images chosen by records). Every ingress rule of theirs names the monitoring
    namespace as its only source, on the metrics port only."""
    port = load_settings(region.config["data"]).metrics_port
    for component in ("worker", "beat"):
        labels = region.deployment(component)["spec"]["template"]["metadata"]["labels"]
        (policy,) = [p for p in region.of_kind("NetworkPolicy") if _matches(p["spec"]["podSelector"], labels)]
        rules = policy["spec"]["ingress"]
        assert rules == [{"from": [MONITORING_NAMESPACE], "ports": [{"protocol": "TCP", "port": port}]}], (
            component
        )


def _documented_patch() -> str:
    """The overlay patch networkpolicy.yaml's header documents, without its comment marks."""
    text = POLICIES.read_text()
    block = re.search(r"^# --- monitoring-namespace patch\n(.*?)^# ---$", text, re.M | re.S)
    assert block, "networkpolicy.yaml documents the monitoring-namespace patch"
    return "".join(line[4:] + "\n" for line in block.group(1).splitlines())


def test_the_monitoring_namespace_is_configurable_by_the_documented_patch(tmp_path: Path) -> None:
    """Issue 22, finding 8 (configurable): the patch the header documents, added to an overlay, moves the
    audience of the worker's, beat's and Flower's policies to another namespace, and nothing else."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(OVERLAYS / 'us-east-1', overlay)}\n" + _documented_patch()
    )
    result = subprocess.run(
        [_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    patched = [obj for obj in yaml.safe_load_all(result.stdout) if obj and obj["kind"] == "NetworkPolicy"]
    original = Region("us-east-1").of_kind("NetworkPolicy")
    assert len(patched) == len(original) == 3
    for before, after in zip(original, patched, strict=True):
        (rule,) = after["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}
        peer["namespaceSelector"] = before["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
        assert after == before, "the patch changes the namespace and nothing else"


def test_every_overlay_pins_the_fleet_image_by_digest() -> None:
    """`images:` uses `digest:` (never `newTag:`); the example digest is all zeros, which
    docs/production.md says to replace with the one `docker push` prints, or with k8s/pin-image.sh."""
    for name in REGIONS:
        kustomization = yaml.safe_load((OVERLAYS / name / "kustomization.yaml").read_text())
        (image,) = kustomization["images"]
        assert image["name"] == "gco-tasks" and "newTag" not in image, name
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"]), name
    guide = (REPO / "docs" / "production.md").read_text()
    assert "k8s/pin-image.sh" in guide and "docker push" in guide
