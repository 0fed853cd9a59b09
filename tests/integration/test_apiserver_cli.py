"""Issue 3's "Must show", from a shell: ``gco-tasks sandbox apiserver --port 0 --kubeconfig K`` runs as
a process, and a separate script that only calls ``kubernetes.config.load_kube_config(K)`` walks the
scenario against it. (The server is a local stand-in for Kubernetes.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

SCENARIO = r"""
import json, sys, time
from kubernetes import client, config
from kubernetes.client import ApiException

config.load_kube_config(sys.argv[1])
apps, core = client.AppsV1Api(), client.CoreV1Api()
NS = "gco-inference"
labels = {"app": "llm", "gco.io/type": "inference"}
dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llm", "labels": labels},
       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm"}},
                "template": {"metadata": {"labels": {"app": "llm"}},
                             "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai"}]}}}}
other = json.loads(json.dumps(dep)); other["metadata"] = {"name": "other", "labels": {"app": "other"}}
seen = {}
seen["create"] = apps.create_namespaced_deployment(NS, dep, _preload_content=False).status
apps.create_namespaced_deployment(NS, other)
try:
    apps.create_namespaced_deployment(NS, dep)
except ApiException as exc:
    seen["create again"] = exc.status
svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm"},
       "spec": {"selector": {"app": "llm"}, "ports": [{"port": 80}]}}
seen["apply service"] = core.patch_namespaced_service("llm", NS, svc, field_manager="gco-tasks", force=True,
    _content_type="application/apply-patch+yaml", _preload_content=False).status
seen["selected"] = [d.metadata.name for d in
                    apps.list_namespaced_deployment(NS, label_selector="gco.io/type=inference").items]
current = apps.read_namespaced_deployment("llm", NS)
stale = apps.read_namespaced_deployment("llm", NS)
current.spec.replicas = 3
apps.replace_namespaced_deployment("llm", NS, current)
stale.spec.replicas = 4
try:
    apps.replace_namespaced_deployment("llm", NS, stale)
except ApiException as exc:
    seen["stale replace"] = exc.status
bad = json.loads(json.dumps(dep)); bad["spec"]["replicas"] = "two"
try:
    apps.patch_namespaced_deployment("llm", NS, bad, field_manager="gco-tasks", force=True,
                                     _content_type="application/apply-patch+yaml")
except ApiException as exc:
    seen["replicas two"] = exc.status
start = time.monotonic()
while True:
    got = apps.read_namespaced_deployment("llm", NS)
    if got.status.ready_replicas == got.spec.replicas:
        break
    assert time.monotonic() - start < 15, "not ready within 15 s"
    time.sleep(0.05)
seen["ready within"] = round(time.monotonic() - start, 2)
print(json.dumps(seen))
"""


def test_must_show_from_a_shell(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "k.yaml"
    server = subprocess.Popen(
        [sys.executable, "-m", "gco_tasks.cli", "sandbox", "apiserver", "--port", "0", "--kubeconfig",
         str(kubeconfig)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(3)]
        port = int(next(line for line in lines if line.startswith("port:")).split()[1])
        assert any(f"http://127.0.0.1:{port}" in line for line in lines)
        script = tmp_path / "scenario.py"
        script.write_text(SCENARIO)
        run = subprocess.run([sys.executable, str(script), str(kubeconfig)], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        assert seen["create"] == 201 and seen["create again"] == 409 and seen["apply service"] == 201
        assert seen["selected"] == ["llm"]
        assert seen["stale replace"] == 409 and seen["replicas two"] == 422
        assert seen["ready within"] < 15  # the stand-in's readiness delay is 1 s; generous on a busy machine
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=5) as response:
            stats = json.loads(response.read())
        assert stats == {"create deployments": 3, "apply services": 1, "list deployments": 1,
                         "get deployments": stats["get deployments"], "update deployments": 2,
                         "apply deployments": 1}  # fmt: skip
        assert stats["get deployments"] >= 3
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=10)
    assert server.returncode == 0 and "stopped" in out
