"""Helpers of ``test_wired_fleet.py``: the fleet's own processes (``celery -A gco_tasks worker|beat``,
``python -m gco_tasks.flower``) started as a region runs them, their ``/metrics`` scraped over HTTP,
Flower's API, ``kubectl``, and the admission objects that make the real API server refuse what the fleet
sends: a ValidatingAdmissionPolicy (422, permanent) and a webhook nobody serves (500, transient), each
bound to named endpoints only."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gco_tasks.core.conventions import ENDPOINT_LABEL
from tests.support import metrics, waits
from tests.support.metrics import Samples as Samples  # re-exported for the wired tests
from tests.support.metrics import scrape as scrape
from tests.support.metrics import total as total

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
QUEUE = f"gco.{REGION}"
NAMESPACE = "gco-inference"
CELERY = [sys.executable, "-m", "celery", "-A", "gco_tasks"]
FLOWER = [sys.executable, "-m", "gco_tasks.flower"]  # the guard that refuses a missing or weak login


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, log: Callable[[], str] = str) -> Any:
    """``check()``'s first truthy value, polled every 0.2 s; fails after ``timeout`` with ``log()``."""
    return waits.wait_for(what, check, timeout, 0.2, log)


class Process:
    """One ``celery -A gco_tasks ...`` process (or another ``command``), its output in a log file, stopped
    with SIGTERM."""

    def __init__(
        self, name: str, args: Sequence[str], env: dict[str, str], logs: Path, command: Sequence[str] = CELERY
    ) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(
                [*command, *args],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return f"--- {self.name}\n{self.text()[-4000:]}"

    def stop(self) -> int:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


# --------------------------------------------------------------------------- metrics


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One series of the region (0 when absent: a counter not incremented yet)."""
    return metrics.sample(samples, name, region=REGION, **labels) or 0.0


# --------------------------------------------------------------------------- Flower


class Flower:
    """Flower's REST API with its basic-auth login."""

    def __init__(self, port: int, login: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.auth = "Basic " + base64.b64encode(login.encode()).decode()

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Authorization": self.auth})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError):
            return None

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.get("/api/tasks") or {}

    def task(self, task_id: str, *states: str) -> dict[str, Any] | None:
        """The task as Flower shows it once it is in one of ``states``."""
        found = self.tasks().get(task_id)
        return found if found and found.get("state") in states else None


# --------------------------------------------------------------------------- the API server refusing


def _probe(api: client.ApiClient, name: str) -> int | None:
    """The HTTP status a dry-run create of a Deployment of endpoint ``name`` gets (None: allowed)."""
    body = {
        "metadata": {"name": f"{name}-probe", "labels": {ENDPOINT_LABEL: name}},
        "spec": {
            "selector": {"matchLabels": {"probe": name}},
            "template": {
                "metadata": {"labels": {"probe": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
            },
        },
    }
    try:
        client.AppsV1Api(api).create_namespaced_deployment(NAMESPACE, body, dry_run="All")
    except ApiException as exc:
        return int(exc.status)
    return None


def _selector(names: Sequence[str]) -> dict[str, Any]:
    return {"matchExpressions": [{"key": ENDPOINT_LABEL, "operator": "In", "values": list(names)}]}


DEPLOYMENT_WRITES = {
    "apiGroups": ["apps"],
    "apiVersions": ["v1"],
    "operations": ["CREATE", "UPDATE"],
    "resources": ["deployments"],
}


@contextlib.contextmanager
def policy_refusing(api: client.ApiClient, tag: str, names: Sequence[str]) -> Iterator[str]:
    """A ValidatingAdmissionPolicy that denies (422 Invalid) every write of the Deployments of ``names``,
    as a cluster's own policy would; effective (checked by a dry run) before it yields its message."""
    admission = client.AdmissionregistrationV1Api(api)
    message = f"Deployments of these endpoints are refused by cluster policy gco-test-{tag}"
    policy = {
        "metadata": {"name": f"gco-test-{tag}"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [DEPLOYMENT_WRITES]},
            "validations": [{"expression": "false", "message": message}],
        },
    }
    binding = {
        "metadata": {"name": f"gco-test-{tag}"},
        "spec": {
            "policyName": f"gco-test-{tag}",
            "validationActions": ["Deny"],
            "matchResources": {"objectSelector": _selector(names)},
        },
    }
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    try:
        wait_for(f"policy gco-test-{tag} in force", lambda: _probe(api, names[0]) == 422, timeout=30)
        yield message
    finally:
        admission.delete_validating_admission_policy_binding(f"gco-test-{tag}")
        admission.delete_validating_admission_policy(f"gco-test-{tag}")
        wait_for(f"policy gco-test-{tag} gone", lambda: _probe(api, names[0]) is None, timeout=30)


@contextlib.contextmanager
def webhook_unreachable(
    api: client.ApiClient, tag: str, names: Sequence[str]
) -> Iterator[Callable[[], None]]:
    """A validating webhook nobody serves, failing closed: writes of the Deployments of ``names`` get
    500 (transient) until the yielded function removes it."""
    admission = client.AdmissionregistrationV1Api(api)
    config = {
        "metadata": {"name": f"gco-test-{tag}"},
        "webhooks": [
            {
                "name": f"{tag}.gco.test",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},
                "rules": [DEPLOYMENT_WRITES],
                "objectSelector": _selector(names),
            }
        ],
    }
    admission.create_validating_webhook_configuration(config)
    removed = False

    def remove() -> None:
        nonlocal removed
        if not removed:
            admission.delete_validating_webhook_configuration(f"gco-test-{tag}")
            removed = True

    try:
        wait_for(f"webhook gco-test-{tag} in force", lambda: _probe(api, names[0]) == 500, timeout=30)
        yield remove
    finally:
        remove()


def kubectl(kubectl_path: Path, kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [str(kubectl_path), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
