"""Section 3 of the fleet benchmark: a real ``celery worker`` process on the bench's services, timed by
its task events; then the queue's dedup with the worker stopped."""

from __future__ import annotations

import ast
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.common import PROJECT_ROOT, QUEUE, REGION, Services, summary_ms
from bench.observe import EventReceiver
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.conventions import RegionKeys
from gco_tasks.worker.fleet import Fleet

log = logging.getLogger("bench.fleet")


class TaskEvents(EventReceiver):
    """The worker's finished tasks as dicts (uuid, type, when this process saw it, runtime, result)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.names: dict[str, str] = {}
        self.finished: list[dict[str, Any]] = []

    def _on(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "task-received":
            self.names[event["uuid"]] = event.get("name", "")
        elif kind in ("task-succeeded", "task-failed"):
            self.finished.append(
                {
                    "uuid": event["uuid"],
                    "type": kind,
                    "at": time.time(),
                    "runtime": event.get("runtime"),
                    "result": event.get("result"),
                }
            )

    def done(self, task: str, since: int) -> list[dict[str, Any]]:
        """Finished runs of ``task`` among the events from index ``since`` on (call under ``cond``)."""
        return [e for e in self.finished[since:] if self.names.get(e["uuid"]) == task]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.error is not None, timeout)
        if self.error is not None:
            raise RuntimeError(f"event receiver failed: {self.error!r}")
        return bool(ok)


class WorkerProcess:
    """``celery -A gco_tasks worker -Q gco.us-east-1 -c 2`` in its own session (so its pool children
    are stopped with it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        command = [
            sys.executable, "-m", "celery", "-A", "gco_tasks", "worker",
            "-Q", QUEUE, "-c", "2", "--without-mingle", "--without-gossip", "-l", "WARNING",
        ]  # fmt: skip
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def worker_env(services: Services) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KUBE", "REDIS"))}
    env.update(services.env())
    return env


def table_digest(store: EndpointStore) -> str:
    """The whole table as one string: unchanged means not one DynamoDB write landed."""
    items = sorted(store.scan_items(), key=lambda item: str(item.get("endpoint_name")))
    return json.dumps(items, sort_keys=True, default=str)


def celery_section(services: Services, fleet: Fleet, endpoints: int, cycles: int) -> dict[str, Any]:
    """Steady-state cycles through a real worker process, then the dedup with the worker stopped (its
    fan-outs run in this process, on ``fleet``). Expects the direct section to have converged the
    endpoints already."""
    # The app reads its settings (REDIS_URL, REGION ...) from os.environ on first use: running_services
    # set them.
    from gco_tasks.worker import tasks
    from gco_tasks.worker.app import app
    from gco_tasks.worker.process import use_fleet

    broker = redis.Redis.from_url(services.redis.url)
    events = TaskEvents(app).start()
    worker = WorkerProcess(worker_env(services), services.workdir / "worker.log")
    try:
        started = time.perf_counter()
        if not events.wait(lambda: events.online, timeout=60):
            raise RuntimeError(f"the worker did not come online:\n{worker.log_tail()}")
        ready_seconds = time.perf_counter() - started
        measured = [
            _worker_cycle(tasks, events, services, fleet.store, broker, worker) for _ in range(cycles)
        ]
    finally:
        worker.stop()
        events.stop()
    # This process's adapters: ``load_api_client`` reads KUBECONFIG as it was when ``kubernetes`` was
    # imported (before running_services set it), so hand the task the bench's own fleet.
    use_fleet(fleet)
    try:
        dedup = _dedup(tasks, broker, endpoints)
    finally:
        use_fleet(None)
    broker.close()
    walls = [cycle["wall_seconds"] for cycle in measured]
    runtimes = [r for cycle in measured for r in cycle.pop("runtimes")]
    return {
        "worker": "celery -A gco_tasks worker -Q gco.us-east-1 -c 2 --without-mingle --without-gossip",
        "worker_ready_seconds": round(ready_seconds, 2),
        "cycles": measured,
        "cycle_wall_seconds_median": round(statistics.median(walls), 3) if walls else None,
        "endpoints_per_second_median": round(endpoints / statistics.median(walls), 1) if walls else None,
        "task_runtime_ms": summary_ms(runtimes),
        "dedup": dedup,
    }


def _worker_cycle(
    tasks: Any,
    events: TaskEvents,
    services: Services,
    store: EndpointStore,
    broker: redis.Redis,
    worker: WorkerProcess,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Enqueue fan_out; wait for it and for every reconcile it sent to finish (task events)."""
    before = table_digest(store)
    services.apiserver.counters.reset()
    with events.cond:
        since = len(events.finished)
    began = time.time()
    tasks.fan_out.apply_async(queue=QUEUE)
    if not events.wait(lambda: bool(events.done("gco_tasks.fan_out", since)), timeout):
        raise RuntimeError(f"fan_out did not finish in {timeout:.0f}s:\n{worker.log_tail()}")
    with events.cond:
        fanned = events.done("gco_tasks.fan_out", since)[0]
    sent = _sent(fanned)
    if not events.wait(lambda: len(events.done("gco_tasks.reconcile_endpoint", since)) >= sent, timeout):
        raise RuntimeError(f"{sent} reconciles did not finish in {timeout:.0f}s:\n{worker.log_tail()}")
    with events.cond:
        reconciled = events.done("gco_tasks.reconcile_endpoint", since)[:sent]
    end = max([fanned["at"], *(e["at"] for e in reconciled)])
    queue_after = int(broker.llen(QUEUE))
    k8s = services.apiserver.stats()
    return {
        "wall_seconds": round(end - began, 3),
        "fan_out_runtime_ms": round(float(fanned["runtime"] or 0) * 1000, 1),
        "sent": sent,
        "reconciled": len(reconciled),
        "failed": sum(1 for e in reconciled if e["type"] == "task-failed"),
        "endpoints_per_second": round(sent / (end - began), 1) if end > began else None,
        "queue_length_after": queue_after,
        "k8s_requests": k8s,
        "table_unchanged": table_digest(store) == before,
        "runtimes": [float(e["runtime"]) for e in reconciled if e["runtime"] is not None],
    }


def _sent(fan_out_event: dict[str, Any]) -> int:
    """How many messages the fan-out sent, from its result in the task-succeeded event."""
    try:
        result = ast.literal_eval(str(fan_out_event["result"]))
        return int(result["sent"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise RuntimeError(f"cannot read the fan-out's result: {fan_out_event['result']!r}") from exc


def _dedup(tasks: Any, broker: redis.Redis, endpoints: int) -> dict[str, Any]:
    """With no worker running, three fan-outs (run here, sending to the broker) leave one message per
    endpoint in the queue, not three."""
    before = int(broker.llen(QUEUE))
    runs = []
    for _ in range(3):
        result = tasks.fan_out.apply().get()
        runs.append({"sent": result.get("sent"), "already_pending": result.get("already_pending")})
    queued = int(broker.llen(QUEUE))
    pending = sum(1 for _ in broker.scan_iter(match=RegionKeys(REGION).pending("*"), count=1000))
    return {
        "fan_outs": runs,
        "queue_length_before": before,
        "queue_length_after": queued,
        "pending_marks": pending,
        "endpoints": endpoints,
        "without_dedup_would_be": 3 * endpoints,
    }
