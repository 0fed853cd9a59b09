"""Fleet benchmark: what one reconcile cycle of a region costs, measured against the real parts.

Where it stands: beside the fleet, never imported by it. It starts its own private services (a
``redis-server``, moto's DynamoDB over HTTP, the sandbox Kubernetes API server, a local stand-in) and
measures, for N endpoints in us-east-1:

1. direct calls, no Celery (``fan_out`` then each message through ``reconcile_endpoint`` with the JSON
   round trip Celery applies): Kubernetes requests by verb, DynamoDB calls, Redis commands and timings
   of the first cycle, of the convergence, of K steady-state cycles and of a cycle after 10 % of the
   images changed;
2. GCO's original monitor for the same N, from its documented behaviour (upstream-behaviour.md,
   defect 11: per endpoint per cycle 3 GETs + 2 DELETEs answered 404 + 1 DynamoDB write). That side is
   derived, not measured;
3. a real ``celery worker`` process (``-c 2``): the wall time of a steady-state cycle from enqueueing
   ``fan_out`` to the last ``reconcile_endpoint`` finished (the worker's task events), i.e. endpoints
   reconciled per second; then the queue's dedup with the worker stopped: three fan-outs leave N
   messages, not 3N.

Usage: ``python -m bench.fleet [--endpoints N] [--cycles K] [--json] [--no-celery]``. Machines are shared
and noisy: quote medians and ratios, not single runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import redis

from gco_sandbox.apiserver import SandboxAPIServer
from gco_sandbox.services import (
    SANDBOX_AWS_ENV,
    DynamoDBServer,
    RedisServer,
    start_dynamodb,
    start_redis,
)
from gco_tasks.config import load_settings
from gco_tasks.conventions import RegionKeys, queue_for_region
from gco_tasks.endpoints import Endpoint, parse_spec
from gco_tasks.fanout import fan_out
from gco_tasks.fleet import Fleet
from gco_tasks.reconciler import reconcile
from gco_tasks.store import EndpointStore

REGION = "us-east-1"
QUEUE = queue_for_region(REGION)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

IMAGE = "vllm/vllm-openai:v0.6.3"
NEW_IMAGE = "vllm/vllm-openai:v0.6.4"
CANARY_IMAGE = "vllm/vllm-openai:v0.7.0"

K8S_WRITE_VERBS = frozenset({"create", "update", "patch", "apply", "delete"})
DYNAMO_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})

#: GCO's monitor, per endpoint per cycle, from its documented behaviour (upstream-behaviour.md, defect 11).
ORIGINAL_GETS = 3
ORIGINAL_DELETES_404 = 2
ORIGINAL_DYNAMO_WRITES = 1
ORIGINAL_INTERVAL_SECONDS = 15

log = logging.getLogger("bench.fleet")


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class BenchEndpoint:
    name: str
    kind: str  # plain | canary | autoscaling | stopped
    spec: dict[str, Any]


def endpoint_mix(count: int) -> list[BenchEndpoint]:
    """``count`` endpoints: index % 10 == 0 with a 20 % canary, == 1 autoscaling, the last one stopped,
    the rest plain (one GPU, one replica)."""
    mix: list[BenchEndpoint] = []
    for index in range(count):
        name = f"bench-{index:04d}"
        spec: dict[str, Any] = {"image": IMAGE, "replicas": 1}
        if count > 1 and index == count - 1:
            kind = "stopped"
        elif index % 10 == 0:
            kind = "canary"
            spec["canary"] = {"image": CANARY_IMAGE, "weight": 20}
        elif index % 10 == 1:
            kind = "autoscaling"
            spec["autoscaling"] = {
                "enabled": True,
                "min_replicas": 1,
                "max_replicas": 4,
                "metrics": [{"type": "cpu", "target": 70}],
            }
        else:
            kind = "plain"
        mix.append(BenchEndpoint(name, kind, spec))
    return mix


def create_records(store: EndpointStore, mix: Sequence[BenchEndpoint]) -> None:
    for endpoint in mix:
        store.create(Endpoint.new(endpoint.name, parse_spec(endpoint.spec), [REGION]))
        if endpoint.kind == "stopped":
            store.update_desired_state(endpoint.name, "stopped")


def settled(store: EndpointStore, mix: Sequence[BenchEndpoint]) -> bool:
    """Every endpoint reports its final state here (running, or stopped) and was promoted to running."""
    items = {item["endpoint_name"]: item for item in store.scan_items()}
    for endpoint in mix:
        item = items.get(endpoint.name) or {}
        state = (item.get("region_status", {}).get(REGION) or {}).get("state")
        if endpoint.kind == "stopped":
            if state != "stopped":
                return False
        elif state != "running" or item.get("desired_state") != "running":
            return False
    return True


# --------------------------------------------------------------------------- services and the fleet


@dataclass
class Services:
    """The private backing services of one bench run."""

    redis: RedisServer
    dynamodb: DynamoDBServer
    apiserver: SandboxAPIServer
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    def env(self) -> dict[str, str]:
        """What a worker process (and this one) needs to reach them."""
        return {
            **SANDBOX_AWS_ENV,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.url,
            "REGION": REGION,
            "REDIS_URL": self.redis.url,
            "KUBECONFIG": str(self.kubeconfig),
            "RECONCILE_INTERVAL_SECONDS": "15",
            "WORKER_HEARTBEAT_FILE": str(self.workdir / "worker.heartbeat"),
        }


@contextmanager
def running_services(ready_delay: float) -> Iterator[Services]:
    """Start the services and point this process's environment at them (boto3 and, later, the Celery
    app read it)."""
    with tempfile.TemporaryDirectory(prefix="gco-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = start_redis(workdir=workdir)
        dynamodb = start_dynamodb()
        apiserver = SandboxAPIServer(port=0, ready_delay=ready_delay).start()
        services = Services(redis_server, dynamodb, apiserver, workdir)
        apiserver.write_kubeconfig(services.kubeconfig)
        for key in [key for key in os.environ if key.startswith(("KUBE", "REDIS"))]:
            del os.environ[key]
        os.environ.update(services.env())
        try:
            yield services
        finally:
            apiserver.stop()
            dynamodb.stop()
            redis_server.stop()


def make_fleet(redis_url: str, kube_client: Any, region: str = REGION, **settings: Any) -> Fleet:
    """A Fleet on the given Redis and Kubernetes client."""
    values: dict[str, Any] = {"region": region, "redis_url": redis_url, "reconcile_interval_seconds": 15}
    values.update(settings)
    return Fleet.from_settings(load_settings({}, **values), api_client=kube_client)


# --------------------------------------------------------------------------- measuring


@dataclass
class Cost:
    """What one stretch of work cost."""

    k8s: dict[str, int]  # "<verb> <resource>" -> requests
    dynamo: dict[str, int]  # operation -> calls
    redis_commands: int

    @property
    def k8s_by_verb(self) -> dict[str, int]:
        verbs: Counter[str] = Counter()
        for key, count in self.k8s.items():
            verbs[key.split()[0]] += count
        return dict(sorted(verbs.items()))

    @property
    def k8s_total(self) -> int:
        return sum(self.k8s.values())

    @property
    def k8s_writes(self) -> int:
        return sum(n for verb, n in self.k8s_by_verb.items() if verb in K8S_WRITE_VERBS)

    @property
    def dynamo_writes(self) -> int:
        return sum(n for op, n in self.dynamo.items() if op in DYNAMO_WRITE_OPS)

    def to_json(self) -> dict[str, Any]:
        return {
            "k8s_requests": self.k8s,
            "k8s_by_verb": self.k8s_by_verb,
            "k8s_total": self.k8s_total,
            "k8s_writes": self.k8s_writes,
            "dynamo_calls": self.dynamo,
            "dynamo_writes": self.dynamo_writes,
            "redis_commands": self.redis_commands,
        }


class Meter:
    """Kubernetes requests (the sandbox API server's counters), DynamoDB calls by operation (botocore's
    ``before-call`` hook on the fleet's client) and Redis commands (``INFO stats``) since ``reset``."""

    def __init__(self, fleet: Fleet, apiserver: Any) -> None:
        self.apiserver = apiserver
        self.redis = fleet.state.client
        self.dynamo: Counter[str] = Counter()
        self.redis_base = 0
        fleet.store.client.meta.events.register("before-call.dynamodb", self._on_call)

    def _on_call(self, model: Any = None, **_: Any) -> None:
        self.dynamo[getattr(model, "name", "?")] += 1

    def _redis_total(self) -> int:
        return int(self.redis.info("stats")["total_commands_processed"])

    def reset(self) -> None:
        self.apiserver.counters.reset()
        self.dynamo.clear()
        self.redis_base = self._redis_total()

    def read(self) -> Cost:
        # The INFO that read the base is counted too: subtract it.
        commands = self._redis_total() - self.redis_base - 1
        return Cost(dict(self.apiserver.stats()), dict(sorted(self.dynamo.items())), max(0, commands))


@dataclass
class Cycle:
    """One fan-out and every message it sent, reconciled in turn."""

    cost: Cost
    wall_seconds: float
    fan_out_seconds: float
    reconcile_seconds: list[float]
    sent: int
    actions: dict[str, int]  # "apply Deployment" -> count
    states: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.cost.to_json(),
            "wall_ms": round(self.wall_seconds * 1000, 1),
            "fan_out_ms": round(self.fan_out_seconds * 1000, 1),
            "reconcile_ms": summary_ms(self.reconcile_seconds),
            "sent": self.sent,
            "actions": self.actions,
            "states": self.states,
        }


def run_cycle(fleet: Fleet, meter: Meter) -> Cycle:
    """As ``tests/integration/harness.run_cycle``, timed and metered: fan-out (its messages go through
    the JSON round trip Celery applies), then each message reconciled in turn."""
    messages: list[tuple[str, dict[str, Any]]] = []

    def send(name: str, snapshot: dict[str, Any]) -> None:
        messages.append((name, json.loads(json.dumps(snapshot))))

    meter.reset()
    start = time.perf_counter()
    fan_out(fleet, send)
    fanned = time.perf_counter()
    durations: list[float] = []
    actions: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for name, snapshot in messages:
        began = time.perf_counter()
        result = reconcile(fleet, name, snapshot).as_dict()
        durations.append(time.perf_counter() - began)
        actions.update(action.split("/")[0] for action in result.get("actions", []))
        states[str(result.get("state"))] += 1
    end = time.perf_counter()
    return Cycle(
        cost=meter.read(),
        wall_seconds=end - start,
        fan_out_seconds=fanned - start,
        reconcile_seconds=durations,
        sent=len(messages),
        actions=dict(sorted(actions.items())),
        states=dict(sorted(states.items())),
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "median": round(statistics.median(seconds) * 1000, 2),
        "p95": round(percentile(seconds, 95) * 1000, 2),
        "p99": round(percentile(seconds, 99) * 1000, 2),
        "max": round(max(seconds) * 1000, 2),
    }


def median_counts(costs: Sequence[dict[str, int]]) -> dict[str, float]:
    keys = sorted({key for cost in costs for key in cost})
    return {key: statistics.median(cost.get(key, 0) for cost in costs) for key in keys}


# --------------------------------------------------------------------------- 1. direct calls


def direct_section(
    fleet: Fleet,
    apiserver: Any,
    endpoints: int,
    cycles: int,
    pause: float = 0.2,
    converge_timeout: float = 120.0,
) -> dict[str, Any]:
    """Create ``endpoints`` records, converge them and measure (see the module docstring, 1.)."""
    mix = endpoint_mix(endpoints)
    began = time.perf_counter()
    create_records(fleet.store, mix)
    created = time.perf_counter() - began
    meter = Meter(fleet, apiserver)

    first = run_cycle(fleet, meter)
    converge = converge_until_quiet(fleet, meter, mix, pause, converge_timeout)

    steady = [run_cycle(fleet, meter) for _ in range(cycles)]
    reconciles = [d for cycle in steady for d in cycle.reconcile_seconds]
    walls = [cycle.wall_seconds for cycle in steady]

    eligible = [e for e in mix if e.kind != "stopped"]
    count = min(len(eligible), max(1, round(endpoints / 10)))
    edited = [eligible[int(i * len(eligible) / count)] for i in range(count)]
    for endpoint in edited:
        fleet.store.update_spec(endpoint.name, lambda spec: spec.with_changes(image=NEW_IMAGE))
    change = run_cycle(fleet, meter)
    after_change = converge_until_quiet(fleet, meter, mix, pause, converge_timeout)

    return {
        "endpoints": endpoints,
        "mix": dict(sorted(Counter(e.kind for e in mix).items())),
        "create_records_seconds": round(created, 2),
        "first_cycle": first.to_json(),
        "converge": converge,
        "steady": {
            "cycles": len(steady),
            "per_cycle": [cycle.to_json() for cycle in steady],
            "k8s_requests_median": median_counts([cycle.cost.k8s for cycle in steady]),
            "k8s_by_verb_median": median_counts([cycle.cost.k8s_by_verb for cycle in steady]),
            "k8s_writes_max": max((cycle.cost.k8s_writes for cycle in steady), default=0),
            "dynamo_writes_max": max((cycle.cost.dynamo_writes for cycle in steady), default=0),
            "dynamo_calls_median": median_counts([cycle.cost.dynamo for cycle in steady]),
            "redis_commands_median": statistics.median(c.cost.redis_commands for c in steady)
            if steady
            else 0,
            "actions_total": sum(sum(cycle.actions.values()) for cycle in steady),
            "fan_out_ms": summary_ms([cycle.fan_out_seconds for cycle in steady]),
            "reconcile_ms": summary_ms(reconciles),
            "cycle_wall_ms_median": round(statistics.median(walls) * 1000, 1) if walls else None,
            "endpoints_per_second": round(endpoints / statistics.median(walls), 1) if walls else None,
        },
        "change": {
            "edited": len(edited),
            "edited_kinds": dict(sorted(Counter(e.kind for e in edited).items())),
            "cycle": change.to_json(),
            "until_quiet": after_change,
        },
    }


def converge_until_quiet(
    fleet: Fleet, meter: Meter, mix: Sequence[BenchEndpoint], pause: float, timeout: float
) -> dict[str, Any]:
    """Cycles until every endpoint is settled (running and promoted, or stopped), then until a cycle
    writes nothing; returns how many (each count includes the cycle that reached it) and what they
    wrote."""
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    cycles = 0
    k8s_writes = 0
    dynamo_writes = 0
    until_settled: int | None = None
    while True:
        cycle = run_cycle(fleet, meter)
        cycles += 1
        k8s_writes += cycle.cost.k8s_writes
        dynamo_writes += cycle.cost.dynamo_writes
        if until_settled is None and settled(fleet.store, mix):
            until_settled = cycles
        if until_settled is not None and cycle.cost.k8s_writes == 0 and cycle.cost.dynamo_writes == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"not settled after {timeout:.0f}s: last cycle {cycle.to_json()}")
        if until_settled is None:
            time.sleep(pause)
    return {
        "cycles_until_settled": until_settled,
        "cycles_until_quiet": cycles,
        "k8s_writes": k8s_writes,
        "dynamo_writes": dynamo_writes,
        "seconds": round(time.perf_counter() - started, 2),
    }


# --------------------------------------------------------------------------- 2. the original's model


def original_model(endpoints: int, steady: dict[str, Any], heartbeat_seconds: int) -> dict[str, Any]:
    """GCO's monitor per cycle for ``endpoints``, derived from its documented behaviour, against the
    measured steady state of the fleet."""
    gets = ORIGINAL_GETS * endpoints
    deletes = ORIGINAL_DELETES_404 * endpoints
    writes = ORIGINAL_DYNAMO_WRITES * endpoints
    ours_k8s = sum(steady["k8s_by_verb_median"].values())
    ours_k8s_writes = steady["k8s_writes_max"]
    ours_writes = steady["dynamo_writes_max"]
    cycles_per_hour = 3600 / ORIGINAL_INTERVAL_SECONDS
    return {
        "source": "derived from upstream-behaviour.md (defect 11), not measured",
        "original": {
            "k8s_get": gets,
            "k8s_delete_404": deletes,
            "k8s_total": gets + deletes,
            "k8s_writes": deletes,
            "dynamo_writes": writes,
            "dynamo_writes_per_hour": round(writes * cycles_per_hour),
        },
        "fleet": {
            "k8s_total": ours_k8s,
            "k8s_writes": ours_k8s_writes,
            "dynamo_writes": ours_writes,
            # Only the status heartbeat (STATUS_HEARTBEAT_SECONDS) rewrites an unchanged status.
            "dynamo_writes_per_hour": round(endpoints * 3600 / heartbeat_seconds),
        },
        "k8s_request_ratio": round((gets + deletes) / ours_k8s, 1) if ours_k8s else None,
        "dynamo_writes_per_hour_ratio": round(cycles_per_hour * heartbeat_seconds / 3600, 1),
    }


# --------------------------------------------------------------------------- 3. a real worker


class TaskEvents:
    """The worker's task events (Celery's event receiver over the broker), in a thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cond = threading.Condition()
        self.names: dict[str, str] = {}
        self.finished: list[dict[str, Any]] = []
        self.online = False
        self.error: BaseException | None = None
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._run, name="bench-events", daemon=True)

    def start(self) -> TaskEvents:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self.receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self.receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # pragma: no cover - reported by wait()
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        with self.cond:
            if kind in ("worker-online", "worker-heartbeat"):
                self.online = True
            elif kind == "task-received":
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
            self.cond.notify_all()

    def done(self, task: str, since: int) -> list[dict[str, Any]]:
        """Finished runs of ``task`` among the events from index ``since`` on (call under ``cond``)."""
        return [e for e in self.finished[since:] if self.names.get(e["uuid"]) == task]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.error is not None, timeout)
        if self.error is not None:
            raise RuntimeError(f"event receiver failed: {self.error!r}")
        return bool(ok)

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=5)


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
    from gco_tasks import tasks
    from gco_tasks.celery import app, use_fleet

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


# --------------------------------------------------------------------------- the run and its report


def run(endpoints: int, cycles: int, with_celery: bool = True, ready_delay: float = 1.0) -> dict[str, Any]:
    report: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
            "endpoints": endpoints,
            "cycles": cycles,
            "region": REGION,
            "sandbox_ready_delay_seconds": ready_delay,
        }
    }
    began = time.perf_counter()
    with running_services(ready_delay) as services:
        configuration = kubernetes.client.Configuration(host=services.apiserver.url)
        with kubernetes.client.ApiClient(configuration) as api_client:
            fleet = make_fleet(services.redis.url, api_client)
            fleet.store.create_table()
            report["direct"] = direct_section(fleet, services.apiserver, endpoints, cycles)
            report["original_model"] = original_model(
                endpoints, report["direct"]["steady"], fleet.settings.status_heartbeat_seconds
            )
            if with_celery:
                report["celery"] = celery_section(services, fleet, endpoints, cycles)
            fleet.state.client.close()
    report["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)
    return report


def _verbs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{verb} {_num(n)}" for verb, n in counts.items()) or "none"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ms(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "no samples"
    return (
        f"median {summary['median']} ms, p95 {summary['p95']} ms, p99 {summary['p99']} ms, "
        f"max {summary['max']} ms (n={summary['n']})"
    )


def render(report: dict[str, Any]) -> str:
    meta = report["meta"]
    direct = report["direct"]
    n = meta["endpoints"]
    lines = [
        f"gco-tasks fleet benchmark - {n} endpoints in {meta['region']}, {meta['cycles']} steady cycles",
        f"{meta['date']}; {meta['machine']} (shared machine: quote medians and ratios)",
        f"mix: {_verbs(direct['mix'])}; records created in {direct['create_records_seconds']} s",
        "",
        "1. Direct calls (fan_out + reconcile_endpoint, no Celery)",
    ]
    first = direct["first_cycle"]
    lines += [
        f"  first cycle (create everything): k8s {_verbs(first['k8s_by_verb'])}; "
        f"DynamoDB writes {first['dynamo_writes']}; wall {first['wall_ms']} ms",
        f"    by resource: {_verbs(first['k8s_requests'])}",
    ]
    conv = direct["converge"]
    lines.append(
        f"  then: all running (and promoted) after {conv['cycles_until_settled']} more cycle(s), "
        f"first cycle without writes: #{conv['cycles_until_quiet']} (their writes: k8s {conv['k8s_writes']}, "
        f"DynamoDB {conv['dynamo_writes']}; {conv['seconds']} s)"
    )
    steady = direct["steady"]
    lines += [
        f"  steady state, per cycle (median of {steady['cycles']}): "
        f"k8s {_verbs(steady['k8s_by_verb_median'])}"
        f"; k8s writes {steady['k8s_writes_max']} (max); DynamoDB writes {steady['dynamo_writes_max']} (max)",
        f"    DynamoDB calls {_verbs(steady['dynamo_calls_median'])}; "
        f"Redis commands {_num(steady['redis_commands_median'])}; actions {steady['actions_total']}",
        f"    fan-out: median {steady['fan_out_ms'].get('median')} ms, "
        f"max {steady['fan_out_ms'].get('max')} ms",
        f"    reconcile_endpoint: {_ms(steady['reconcile_ms'])}",
        f"    cycle wall {steady['cycle_wall_ms_median']} ms -> {steady['endpoints_per_second']} endpoints/s "
        "(one process, sequential)",
    ]
    change = direct["change"]
    cycle = change["cycle"]
    quiet = change["until_quiet"]
    lines += [
        f"  change cycle (image of {change['edited']} endpoints edited: {_verbs(change['edited_kinds'])}):",
        f"    k8s {_verbs(cycle['k8s_requests'])}; DynamoDB writes {cycle['dynamo_writes']} "
        f"({_verbs({k: v for k, v in cycle['dynamo_calls'].items() if k in DYNAMO_WRITE_OPS})})",
        f"    actions {_verbs(cycle['actions'])}; states {_verbs(cycle['states'])}",
        f"    then running again after {quiet['cycles_until_settled']} cycle(s), quiet at "
        f"#{quiet['cycles_until_quiet']} (their writes: k8s {quiet['k8s_writes']}, "
        f"DynamoDB {quiet['dynamo_writes']})",
        "",
    ]
    model = report["original_model"]
    orig, ours = model["original"], model["fleet"]
    lines += [
        "2. GCO's original monitor, same N, per cycle (" + model["source"] + ")",
        f"  original: {orig['k8s_get']} GET + {orig['k8s_delete_404']} DELETE (404) = {orig['k8s_total']} "
        f"k8s requests ({orig['k8s_writes']} writes), {orig['dynamo_writes']} DynamoDB writes",
        f"  fleet   : {_num(ours['k8s_total'])} k8s requests ({ours['k8s_writes']} writes), "
        f"{ours['dynamo_writes']} DynamoDB writes",
        f"  ratio   : {model['k8s_request_ratio']}x fewer Kubernetes requests; "
        f"Kubernetes writes {orig['k8s_writes']} -> {ours['k8s_writes']}; "
        f"DynamoDB writes {orig['dynamo_writes']} -> {ours['dynamo_writes']}",
        f"  per hour: DynamoDB writes {orig['dynamo_writes_per_hour']} (every 15 s) vs "
        f"{ours['dynamo_writes_per_hour']} (status heartbeat only) = "
        f"{model['dynamo_writes_per_hour_ratio']}x",
    ]
    celery = report.get("celery")
    if celery:
        lines += [
            "",
            f"3. Real worker: {celery['worker']}",
            f"  worker online in {celery['worker_ready_seconds']} s",
        ]
        for index, run_ in enumerate(celery["cycles"], 1):
            lines.append(
                f"  cycle {index}: {run_['reconciled']}/{run_['sent']} reconciled "
                f"in {run_['wall_seconds']} s "
                f"({run_['endpoints_per_second']}/s), fan_out {run_['fan_out_runtime_ms']} ms, "
                f"failed {run_['failed']}, queue after {run_['queue_length_after']}, "
                f"k8s {_verbs(run_['k8s_requests'])}, table unchanged {run_['table_unchanged']}"
            )
        dedup = celery["dedup"]
        lines += [
            f"  median cycle {celery['cycle_wall_seconds_median']} s -> "
            f"{celery['endpoints_per_second_median']} endpoints/s end to end",
            f"  reconcile_endpoint runtime in the worker: {_ms(celery['task_runtime_ms'])}",
            "  dedup, worker stopped, 3 fan-outs: "
            + "; ".join(
                f"sent {r['sent']} / already pending {r['already_pending']}" for r in dedup["fan_outs"]
            )
            + f" -> queue holds {dedup['queue_length_after']} messages "
            f"(N={dedup['endpoints']}, without dedup {dedup['without_dedup_would_be']})",
        ]
    lines += ["", f"total {meta['total_seconds']} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100, help="number of endpoints (default 100)")
    parser.add_argument("--cycles", type=int, default=5, help="steady-state cycles measured (default 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-celery", action="store_true", help="direct-call section only")
    parser.add_argument(
        "--ready-delay", type=float, default=1.0, help="seconds until a sandbox Deployment is ready (1.0)"
    )
    args = parser.parse_args(argv)
    if args.endpoints < 1 or args.cycles < 1:
        parser.error("--endpoints and --cycles must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = run(args.endpoints, args.cycles, with_celery=not args.no_celery, ready_delay=args.ready_delay)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
