"""The chaos suite's tools: real ``celery worker``/``celery beat`` processes that can be killed, Redis
servers that can be restarted (with or without an AOF, with TLS, behind Sentinel), and deadlines.

Every wait is a condition with a deadline (``wait_until``), never a bare sleep; every process started
here is stopped by the fixture that owns it, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gco_sandbox.services import ServiceError, free_port, wait_for_port
from tests.support.waits import timed_wait

CELERY = [sys.executable, "-m", "celery", "-A", "gco_tasks"]
REGION = "us-east-1"
QUEUE = f"gco.{REGION}"
#: Every wait of the chaos suite: a condition with a deadline; the seconds it took.
wait_until = timed_wait


# --------------------------------------------------------------------------- fleet processes


@dataclass
class FleetProcesses:
    """Named ``celery`` processes of one region, each in its own session (so a whole worker, pool
    children included, can be killed at once), each logging to ``<logs>/<name>.log``."""

    env: dict[str, str]
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*CELERY, *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running[name] = process
        return process

    def worker(
        self, name: str = "worker", concurrency: int = 1, loglevel: str = "INFO", **env: str
    ) -> subprocess.Popen[bytes]:
        args = [
            "-Q",
            QUEUE,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
        ]
        return self.start(name, "worker", *args, "-l", loglevel, env=env)

    def beat(self, name: str = "beat", loglevel: str = "INFO", **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, "beat", "-l", loglevel, env=env)

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def children(self, name: str) -> list[int]:
        """The pool processes of a worker (Linux ``/proc``)."""
        pid = self.pid(name)
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(part) for part in text.split()]

    def alive(self, name: str) -> bool:
        return self.running[name].poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (``kill -9`` of a worker takes its pool with it)."""
        process = self.running[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(timeout=20)

    @staticmethod
    def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
        os.kill(pid, sig)

    def holder_of(self, broker_url: str, endpoint: str, timeout: float = 20.0) -> str:
        """The name of the worker reconciling ``endpoint`` now, alone (``reconcile_endpoint``) or in a
        batch (``reconcile_endpoints``: a fan-out that finds another endpoint due in the same cycle sends
        both in one message), asked through Celery's remote control (``inspect active``) from a
        throwaway app (no global configuration changed)."""
        from celery import Celery

        probe = Celery("chaos-probe", broker=broker_url, set_as_current=False)
        found: list[str] = []

        def running() -> bool:
            active = probe.control.inspect(timeout=1.0).active() or {}
            found[:] = [
                node for node, tasks in active.items() if any(_reconciles(t, endpoint) for t in tasks)
            ]
            return bool(found)

        try:
            wait_until(running, timeout, f"a worker reconciling {endpoint}")
        finally:
            probe.close()
        return found[0].partition("@")[0]

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        if process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop_all(self) -> None:
        """``kill -9`` every process group at once (the scenario is over: nothing to shut down gently)."""
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.running.values():
            process.wait(timeout=20)
        self.running.clear()

    def logged(self, name: str, text: str) -> bool:
        """``text`` appears anywhere in the process's log."""
        path = self.logs / f"{name}.log"
        return path.exists() and text in path.read_text(errors="replace")

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs_text(self, tail: int = 3000) -> str:
        """The end of every process's log, for failure messages."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}" for path in self.logs.glob("*.log")
        )


def _reconciles(task: Mapping[str, object], endpoint: str) -> bool:
    """Whether an ``inspect active`` entry reconciles ``endpoint``: a lone reconcile names it as its
    argument, a batch in the list that is its argument."""
    args = task.get("args")
    first = args[0] if isinstance(args, list | tuple) and args else None
    if task.get("name") == "gco_tasks.reconcile_endpoint":
        return first == endpoint
    batch = task.get("name") == "gco_tasks.reconcile_endpoints"
    return batch and isinstance(first, list) and endpoint in first


# --------------------------------------------------------------------------- Redis servers


def redis_binary(name: str = "redis-server") -> str:
    binary = shutil.which(name)
    if binary is None:
        raise ServiceError(
            f"{name} not found: `make system-deps` installs it (Debian: apt-get install {name})"
        )
    return binary


@dataclass
class RedisNode:
    """A ``redis-server`` on a fixed port that can be killed and started again (same port, same
    directory): with ``aof`` it keeps an append-only file (fsync always), without it nothing at all."""

    workdir: Path
    aof: bool = False
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--maxmemory-policy", "noeviction", "--loglevel", "warning"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return [*args, *self.extra]

    def start(self) -> RedisNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=10)
        return self

    def kill(self) -> None:
        """``kill -9``: whatever is not on disk is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)


@contextlib.contextmanager
def started(*nodes: RedisNode | SentinelNode) -> Iterator[None]:
    """Start ``nodes`` in order; stop every one of them afterwards, whatever happened."""
    try:
        for node in nodes:
            node.start()
        yield
    finally:
        for node in reversed(nodes):
            node.stop()


@dataclass
class SentinelNode:
    """One ``redis-sentinel`` watching ``master`` (quorum 2, down after 1 s, failover timeout 5 s)."""

    workdir: Path
    primary_port: int
    master: str = "mymaster"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "sentinel.conf"  # sentinel rewrites its own file: one per sentinel
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nloglevel warning\n"
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.master} 1000\n"
            f"sentinel failover-timeout {self.master} 5000\n"
            f"sentinel parallel-syncs {self.master} 1\n"
        )
        log = (self.workdir / "sentinel.log").open("ab")
        self.process = subprocess.Popen(
            [redis_binary("redis-sentinel"), str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, timeout=10)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def primary(self) -> tuple[str, int] | None:
        """Who this sentinel says the primary is."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)
        try:
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", self.master)
        finally:
            client.close()
        return (str(answer[0]), int(answer[1])) if answer else None
