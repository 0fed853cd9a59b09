"""TLS Redis as the README documents it, and no secret of the fleet on any surface.

A ``redis-server`` that speaks only TLS (a CA and server certificate made by the test) and requires a
password, as ElastiCache with in-transit encryption and AUTH does. The fleet gets
``REDIS_URL=rediss://:<password>@localhost:<port>/0?ssl_ca_certs=<ca>``: certificate verification on
(the default), so a worker and a beat converge an endpoint only because the CA verifies the server. A
client given another CA is refused.

Then every surface that shows configuration, logs or outcomes is searched for each secret the processes
hold (issue 22, finding 10): the Redis password, the AWS credentials (access key id, secret key, session
token: every DynamoDB request carries the key id and the session token), and the worker's Kubernetes
token (on the real control plane a ServiceAccount token from the TokenRequest API, bound to the fleet's
Role; the stand-in takes any bearer token), and a record's env value (which the API's and DynamoDB's
response bodies carry). The surfaces: ``celery inspect conf`` from a real worker,
Flower's ``/api/workers?refresh=1`` (the worker's configuration as Flower shows it), the worker's, beat's
and Flower's logs at DEBUG (botocore, urllib3 and the Kubernetes client log requests there), the
Kubernetes Events the fleet recorded, the records' region status, and the CLI's ``status`` and ``list
--json``. One endpoint converges and one is refused (over a cap), so error paths are on the surfaces too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from kombu.exceptions import OperationalError
from kubernetes import client
from redis.exceptions import ConnectionError as RedisConnectionError

from gco_sandbox.controlplane import raw
from gco_sandbox.services import free_port, wait_for_port
from gco_tasks.adapters.locks import redis_client
from gco_tasks.core.config import load_settings
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.worker.app import celery_config

from .harness import CELERY, REGION, wait_until
from .tls import make_pki, tls_redis

SECRET = "Planted-Redis-Password-5d1e"
AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEYID5D1E",
    "AWS_SECRET_ACCESS_KEY": "Planted/Aws+Secret-Access-Key-5d1e",
    "AWS_SESSION_TOKEN": "Planted-Aws-Session-Token-5d1e",
}
STANDIN_TOKEN = "Planted-Kubernetes-Token-5d1e"
ENV_SECRET = "Planted-Endpoint-Env-Value-5d1e"  # a record's env value: shown as *** everywhere
PROBE_ACCOUNT = "secrets-probe"  # the worker's ServiceAccount on the real control plane
RBAC = Path(__file__).resolve().parents[2] / "k8s" / "base" / "rbac.yaml"


def flower_workers(port: int) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers?refresh=1")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"ops:flower-login").decode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        workers: dict[str, Any] = json.loads(answer.read())
    return workers


@contextlib.contextmanager
def worker_token(cluster: Any) -> Iterator[str]:
    """The bearer token the worker's kubeconfig carries. Real control plane: a TokenRequest token of a
    ServiceAccount bound to the fleet's own Role (k8s/base/rbac.yaml), removed afterwards."""
    if not cluster.real:
        yield STANDIN_TOKEN
        return
    core, rbac = client.CoreV1Api(cluster.api_client), client.RbacAuthorizationV1Api(cluster.api_client)
    (role,) = [obj for obj in yaml.safe_load_all(RBAC.read_text()) if obj and obj["kind"] == "Role"]
    namespace = role["metadata"]["namespace"]
    raw(core.create_namespaced_service_account, "gco-system", {"metadata": {"name": PROBE_ACCOUNT}})
    raw(rbac.create_namespaced_role, namespace, {"metadata": {"name": PROBE_ACCOUNT}, "rules": role["rules"]})
    binding = {
        "metadata": {"name": PROBE_ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PROBE_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": PROBE_ACCOUNT, "namespace": "gco-system"}],
    }
    raw(rbac.create_namespaced_role_binding, namespace, binding)
    try:
        request = {"spec": {"expirationSeconds": 3600}}
        answer = raw(core.create_namespaced_service_account_token, PROBE_ACCOUNT, "gco-system", request)
        yield str(answer["status"]["token"])
    finally:
        raw(rbac.delete_namespaced_role_binding, PROBE_ACCOUNT, namespace)
        raw(rbac.delete_namespaced_role, PROBE_ACCOUNT, namespace)
        raw(core.delete_namespaced_service_account, PROBE_ACCOUNT, "gco-system")


def token_kubeconfig(kubeconfig: Path, token: str, path: Path) -> Path:
    """``kubeconfig`` with its user's credentials replaced by ``token`` alone."""
    config = yaml.safe_load(kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gco_tasks.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_tls_redis_with_auth_and_no_secret_on_any_surface(
    cluster: Any, make_chaos: Any, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    node = tls_redis(tmp_path / "redis", pki, SECRET).start()
    with worker_token(cluster) as token:
        kubeconfig = token_kubeconfig(cluster.kubeconfig, token, tmp_path / "worker-kubeconfig.yaml")
        chaos = make_chaos(
            f"rediss://:{SECRET}@localhost:{node.port}/0?ssl_ca_certs={pki.ca}",
            KUBECONFIG=str(kubeconfig),
            **AWS_CREDENTIALS,
        )
        try:
            secrets = {"Redis password": SECRET, "Kubernetes token": token, "env value": ENV_SECRET}
            scenario(chaos, cluster, {**secrets, **AWS_CREDENTIALS})
        finally:
            chaos.processes.stop_all()
            node.stop()


def scenario(chaos: Any, cluster: Any, secrets: dict[str, str]) -> None:
    spec = {"image": "nginx:1.27", "env": {"API_TOKEN": ENV_SECRET}}
    chaos.store.create(Endpoint.new("alpha", parse_spec(spec), [REGION]))
    chaos.intents["alpha"] = "running"
    chaos.store.create(
        Endpoint.new("capped", parse_spec({"image": "nginx:1.27", "replicas": 1000}), [REGION])
    )
    chaos.intents["capped"] = "running"
    chaos.invalid.add("capped")  # refused on purpose: the one record allowed to end in error
    chaos.processes.worker("worker", concurrency=1, loglevel="DEBUG")
    chaos.processes.beat(loglevel="DEBUG")
    wait_until(lambda: chaos.converged("alpha"), 90, "alpha running through TLS Redis")
    wait_until(lambda: chaos.state("capped") == "error", 30, "capped refused (over the replicas cap)")

    conf = subprocess.run(
        [*CELERY, "inspect", "conf", "--json", "-t", "10"],
        env=chaos.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert conf.returncode == 0, conf.stderr
    assert "redbeat_redis_options" in conf.stdout and "broker_use_ssl" in conf.stdout

    flower_port = free_port()
    chaos.processes.start(
        "flower",
        "flower",
        f"--port={flower_port}",
        "--address=127.0.0.1",
        "--basic-auth=ops:flower-login",
    )
    wait_for_port(flower_port, timeout=30)
    workers: dict[str, Any] = {}

    def flower_shows_the_conf() -> bool:
        workers.update(flower_workers(flower_port))
        return any(worker.get("conf") for worker in workers.values())

    wait_until(flower_shows_the_conf, 30, "Flower's view of the worker's configuration")
    events = raw(
        client.EventsV1Api(cluster.api_client).list_namespaced_event, chaos.settings.inference_namespace
    )
    assert events["items"], "the fleet recorded Events"

    surfaces = {
        "celery inspect conf": conf.stdout + conf.stderr,
        "Flower /api/workers": json.dumps(workers),
        "worker log (DEBUG)": chaos.processes.log("worker", tail=10_000_000),
        "beat log (DEBUG)": chaos.processes.log("beat", tail=10_000_000),
        "flower log": chaos.processes.log("flower", tail=10_000_000),
        "Kubernetes Events": json.dumps(events),
        "region status in the table": json.dumps(
            [item.get("region_status") for item in chaos.store.scan_items()], default=str
        ),
        "gco-tasks endpoints status": cli(chaos.env, "endpoints", "status", "alpha")
        + cli(chaos.env, "endpoints", "status", "capped"),
        "gco-tasks endpoints list --json": cli(chaos.env, "endpoints", "list", "--json"),
    }
    assert all(surfaces.values())
    assert "replicas" in surfaces["region status in the table"], "the refusal is on the surfaces"
    leaked = {
        f"{secret} in {surface}"
        for surface, text in surfaces.items()
        for secret, value in secrets.items()
        if value in text
    }
    assert not leaked, f"secrets on output surfaces: {sorted(leaked)}"
    chaos.nothing_lost()


def test_an_unknown_ca_is_refused(tmp_path: Path) -> None:
    """Verification stays on: our client and Celery's broker connection refuse a server whose certificate
    the configured CA did not sign."""
    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other", ca_name="another CA")
    node = tls_redis(tmp_path / "redis", pki, SECRET).start()
    try:
        good = load_settings(
            {"REDIS_URL": f"rediss://:{SECRET}@localhost:{node.port}/0?ssl_ca_certs={pki.ca}"}
        )
        assert redis_client(good.redis_target).ping()
        bad = load_settings(
            {"REDIS_URL": f"rediss://:{SECRET}@localhost:{node.port}/0?ssl_ca_certs={other.ca}"}
        )
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            redis_client(bad.redis_target).ping()
        app = Celery("tls-probe", set_as_current=False)
        app.conf.update(celery_config(bad))
        with (
            app.connection_for_write() as connection,
            pytest.raises(OperationalError, match="certificate verify failed"),
        ):
            connection.ensure_connection(max_retries=1)
    finally:
        node.stop()
