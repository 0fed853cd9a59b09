"""The exporters of real processes, scraped over HTTP: a ``celery worker`` (prefork, two children) whose
parent serves what its children recorded, summed; an expired message counted by the parent; a child
killed mid-task loses its live gauge but keeps its counts; a stale file of a previous run is wiped at
start; JSON log lines carry the task context. A ``celery beat`` serves its sends and the queue depth
it causes (no worker consumes), computed from Redis at scrape time.

The processes run ``tests/e2e/observed_app.py``, which installs the same ``exporter`` as the
fleet's own app (whose processes ``test_wired_fleet.py`` scrapes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gco_sandbox.services import free_port
from tests.support import metrics
from tests.support.metrics import Samples, scrape
from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
QUEUE = f"gco.{REGION}"
CELERY = [sys.executable, "-m", "celery", "-A", "tests.e2e.observed_app"]


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return metrics.sample(samples, name, region=REGION, **labels)


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [*CELERY, *args],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


@pytest.fixture()
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "PROMETHEUS", "METRICS", "LOG_"))
    }
    base.update(REGION=REGION, REDIS_URL=redis_url, LOG_FORMAT="json", PYTHONPATH=str(REPO))
    return base


@pytest.fixture()
def celery_client(env: dict[str, str]) -> Iterator[Any]:
    """The test app in this process, to send tasks and read results (its signals are not connected to
    anything that runs here: no worker or beat starts in this process)."""
    from celery import Celery

    app = Celery("observed-client", broker=env["REDIS_URL"], backend=env["REDIS_URL"], set_as_current=False)
    app.conf.update(task_default_queue=QUEUE, result_expires=600)
    yield app
    app.close()


def test_worker_parent_serves_what_its_children_recorded(
    env: dict[str, str], tmp_path: Path, celery_client: Any
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    stale = directory / "counter_999999.db"
    stale.write_bytes(b"\0" * 64)  # a previous run's file: must not be read, must be removed
    port = free_port()
    worker_env = {**env, "METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    args = ["worker", "-Q", QUEUE, "-c", "2", "-P", "prefork", "-O", "fair", "--without-mingle"]
    worker = Process([*args, "--without-gossip", "-l", "INFO"], worker_env, tmp_path / "worker.log")
    try:
        first = wait_for("the worker's exporter", lambda: scrape(port), log=worker.log)
        assert not stale.exists(), "the previous run's files are removed at worker_init"
        assert sample(first, "gco_reconcile_interval_seconds") == 15
        assert sample(first, "gco_queue_depth", queue=QUEUE) is not None
        assert ("process_resident_memory_bytes", frozenset()) in first, "the parent's own process metrics"

        send = celery_client.send_task
        results = [send("gco_tasks.test_record", args=["applied"], kwargs={"sleep": 0.4}) for _ in range(6)]
        results += [send("gco_tasks.test_record", args=[kind]) for kind in ("error", "skipped_locked")]
        pids = {result.get(timeout=30) for result in results}
        assert len(pids) == 2, "both pool children ran tasks"

        samples = wait_for("the children's counts", lambda: scrape(port), log=worker.log)
        assert sample(samples, "gco_reconcile_total", result="applied") == 6, "summed over both children"
        assert sample(samples, "gco_reconcile_total", result="error") == 1
        assert sample(samples, "gco_reconcile_total", result="skipped_locked") == 1
        assert sample(samples, "gco_reconcile_errors_total", reason="kube_invalid") == 1
        assert sample(samples, "gco_reconcile_duration_seconds_count", result="applied") == 6
        task = "gco_tasks.test_record"
        assert sample(samples, "gco_tasks_in_progress", task=task) == 0

        expired = datetime.now(UTC) - timedelta(seconds=5)
        send("gco_tasks.test_record", args=["noop"], expires=expired)
        wait_for(
            "the expired message counted by the parent",
            lambda: sample(scrape(port) or {}, "gco_expired_messages_total", task=task) == 1,
            log=worker.log,
        )

        pid_file = tmp_path / "hang.pid"
        send("gco_tasks.test_hang", args=[str(pid_file), 120])
        in_progress = {"task": "gco_tasks.test_hang"}
        wait_for(
            "a hanging task", lambda: sample(scrape(port) or {}, "gco_tasks_in_progress", **in_progress) == 1
        )
        os.kill(int(wait_for("its pid", pid_file.read_text)), signal.SIGKILL)
        wait_for(
            "the killed child's live gauge reaped",
            lambda: not sample(scrape(port) or {}, "gco_tasks_in_progress", **in_progress),
            log=worker.log,
        )
        after = scrape(port) or {}
        assert sample(after, "gco_reconcile_total", result="deleted") == 1, "a dead child's counts stay"
        assert sample(after, "gco_reconcile_total", result="applied") == 6
        main = worker.popen.pid
        wait_for("a replacement child", lambda: len(children(main)) == 2, log=worker.log)
        wait_for(  # the replacement's worker_process_init closes its inherited copy of the socket
            "only the parent holding the exporter's socket",
            lambda: socket_holders(port) == {main},
            timeout=10,
            log=lambda: f"holders {socket_holders(port)}, main {main}\n{worker.log()}",
        )
    finally:
        code = worker.stop()
    assert code == 0, worker.log()
    assert scrape(port) is None, "the exporter stops with the worker"
    check_json_logs(worker.log_path.read_text(errors="replace"), results[0].id)


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def socket_holders(port: int) -> set[int]:
    """The pids holding the socket that listens on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    assert inodes, f"nothing listens on {port}"
    holders = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = {os.readlink(fd) for fd in fd_dir.iterdir()}
        except OSError:  # a process that ended, or not ours to read
            continue
        if links & inodes:
            holders.add(int(fd_dir.parent.name))
    return holders


def check_json_logs(text: str, task_id: str) -> None:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) >= 10, text[-3000:]
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "region"} <= set(line), line
        assert line["region"] == REGION
        datetime.fromisoformat(line["timestamp"])
    ours = [line for line in lines if line["message"] == "recorded" and line.get("task_id") == task_id]
    assert len(ours) == 1, lines[-5:]
    (line,) = ours
    assert line["endpoint"] == "my-llm" and line["result"] == "applied" and line["duration_ms"] == 20.0
    assert line["logger"] == "gco_tasks.test_app" and line["level"] == "INFO"
    assert any(line["logger"].startswith("celery") for line in lines), "Celery's own lines are JSON too"


def test_beat_serves_its_sends_and_the_queue_depth_they_cause(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    beat_env = {**env, "METRICS_PORT": str(port)}  # one process: no multiprocess directory
    beat = Process(["beat", "-s", str(tmp_path / "schedule"), "-l", "INFO"], beat_env, tmp_path / "beat.log")
    try:

        def sent_a_few() -> Samples | None:
            samples = scrape(port)
            sent = sample(samples or {}, "gco_beat_sent_total", task="gco_tasks.test_record") or 0
            return samples if sent >= 3 else None

        samples = wait_for("three sends", sent_a_few, log=beat.log)
        depth = sample(samples, "gco_queue_depth", queue=QUEUE)
        assert depth is not None and depth >= 2, "nobody consumes: beat's messages wait in the queue"
        assert sample(samples, "gco_reconcile_interval_seconds") == 15
        assert ("process_resident_memory_bytes", frozenset()) in samples
    finally:
        code = beat.stop()
    assert code == 0, beat.log()
