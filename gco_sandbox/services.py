"""Private backing services for tests, benchmarks and the sandbox: a ``redis-server`` process on a free
port and moto's DynamoDB server over HTTP.

Where it stands in the flow: beside it. Nothing in the fleet imports this module; the test fixtures,
``bench/`` and ``gco-tasks sandbox`` start these so that they never depend on services already running
on the machine.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Dummy credentials for moto; boto3 refuses to sign without some.
SANDBOX_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServiceError(RuntimeError):
    """A backing service could not be started; the message says what is missing and how to get it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceError(f"nothing listening on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.02)


@dataclass
class RedisServer:
    """A private ``redis-server`` process (no persistence, loopback only, ``noeviction`` as Celery's docs
    require of a broker)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_argv(binary: str, port: int, workdir: Path | None = None) -> tuple[str, ...]:
    """A private redis-server: loopback only, no persistence, ``noeviction`` (a broker must not evict)."""
    args = (
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--loglevel", "warning",
    )  # fmt: skip
    return args if workdir is None else (*args, "--dir", str(workdir))


def start_redis(port: int = 0, workdir: Path | None = None) -> RedisServer:
    """Start ``redis-server`` on ``port`` (0: a free one) and wait until it accepts connections."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server not found on PATH: install it ('apt-get install redis-server' on Debian/Ubuntu, "
            "'brew install redis' on macOS); `make test` and `make sandbox` do this for you when run as root"
        )
    port = port or free_port()
    args = list(redis_argv(binary, port, workdir))
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
    except ServiceError:
        process.kill()
        _, err = process.communicate()
        raise ServiceError(
            f"redis-server did not start on port {port}: {err.decode(errors='replace')}"
        ) from None
    return RedisServer(port=port, process=process)


@dataclass
class DynamoDBServer:
    """moto's server (DynamoDB over real HTTP) running in a thread of this process."""

    server: Any

    @property
    def url(self) -> str:
        _host, port = self.server.get_host_and_port()
        return f"http://localhost:{port}"

    def stop(self) -> None:
        self.server.stop()


def start_dynamodb(port: int = 0) -> DynamoDBServer:
    """Start moto's server on 127.0.0.1 (``port`` 0: a free one). Point boto3 at it with
    ``AWS_ENDPOINT_URL_DYNAMODB=<url>`` and the dummy credentials in ``SANDBOX_AWS_ENV``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ServiceError(
            "moto's server is not installed: install the sandbox (pip install -e ./gco_sandbox)"
        ) from exc
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return DynamoDBServer(server=server)


@contextlib.contextmanager
def running_redis(port: int = 0) -> Iterator[RedisServer]:
    server = start_redis(port)
    try:
        yield server
    finally:
        server.stop()
