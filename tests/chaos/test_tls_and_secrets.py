"""TLS Redis as the README documents it, and the Redis password on no surface.

A ``redis-server`` that speaks only TLS (a CA and server certificate made by the test) and requires a
password, as ElastiCache with in-transit encryption and AUTH does. The fleet gets
``REDIS_URL=rediss://:<password>@localhost:<port>/0?ssl_ca_certs=<ca>``: certificate verification on
(the default), so a worker and a beat converge an endpoint only because the CA verifies the server. A
client given another CA is refused. Then every surface that shows configuration or logs is searched for
the planted password: ``celery inspect conf`` from a real worker, Flower's ``/api/workers?refresh=1``
(the worker's configuration as Flower shows it), and the worker's and beat's logs at DEBUG.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from gco_sandbox.services import free_port, wait_for_port
from gco_tasks.adapters.locks import redis_client
from gco_tasks.core.config import load_settings
from gco_tasks.worker.app import celery_config

from .harness import CELERY, wait_until
from .tls import make_pki, tls_redis

SECRET = "Planted-Redis-Password-5d1e"


def flower_workers(port: int) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers?refresh=1")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"ops:flower-login").decode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        workers: dict[str, Any] = json.loads(answer.read())
    return workers


def test_tls_redis_with_auth_and_the_password_on_no_surface(make_chaos: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    node = tls_redis(tmp_path / "redis", pki, SECRET).start()
    chaos = make_chaos(f"rediss://:{SECRET}@localhost:{node.port}/0?ssl_ca_certs={pki.ca}")
    try:
        chaos.deploy("alpha")
        chaos.processes.worker("worker", concurrency=1, loglevel="DEBUG")
        chaos.processes.beat(loglevel="DEBUG")
        wait_until(lambda: chaos.converged("alpha"), 60, "alpha running through TLS Redis")

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

        surfaces = {
            "celery inspect conf": conf.stdout + conf.stderr,
            "Flower /api/workers": json.dumps(workers),
            "worker log (DEBUG)": chaos.processes.log("worker", tail=10_000_000),
            "beat log (DEBUG)": chaos.processes.log("beat", tail=10_000_000),
            "flower log": chaos.processes.log("flower", tail=10_000_000),
        }
        leaked = [name for name, text in surfaces.items() if SECRET in text]
        assert not leaked, f"the Redis password appears in: {leaked}"
        assert all(surfaces.values())
        chaos.nothing_lost()
    finally:
        chaos.processes.stop_all()
        node.stop()


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
