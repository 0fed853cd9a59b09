"""The wired fleet as a region runs it: a real ``celery -A gco_tasks worker`` (prefork, two children,
``PROMETHEUS_MULTIPROC_DIR``, ``LOG_FORMAT=json``), Flower and, in one test, beat, on a private
redis-server and moto, driving the REAL control plane. What an operator sees is checked where an
operator looks:

- the worker's and beat's ``/metrics`` over HTTP, with exact values after reconciles that applied, were
  refused by the API server (a ValidatingAdmissionPolicy: 422), hit an invalid record and skipped on a
  held lock, and after a fan-out (messages, endpoints by state, when it finished);
- Flower's ``/api/tasks`` (built from Celery's task events): a permanent failure FAILED with its reason
  and not retried, a transient one (a webhook that fails closed: 500) retried then SUCCESS, a locked
  skip SUCCESS with ``skipped_locked`` in its result;
- ``kubectl describe deployment`` shows the Events the fleet recorded;
- the worker's log: one JSON object per line, each reconcile with endpoint, region, task id, result and
  duration.

The processes are started once for the module; each test uses its own endpoints and measures deltas
from a quiet fleet (empty queue, nothing running), so the tests pass in any order.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from kubernetes import client

from gco_sandbox.controlplane import ControlPlane, find_binaries
from gco_sandbox.services import SANDBOX_AWS_ENV, DynamoDBServer, RedisServer, free_port
from gco_tasks.adapters.locks import RegionState
from gco_tasks.adapters.metric_labels import ENDPOINT_STATES
from gco_tasks.adapters.store import EndpointStore
from gco_tasks.core.config import load_settings
from gco_tasks.core.errors import ReconcileFailed
from gco_tasks.core.records import Endpoint, parse_spec
from tests.clusters import reset_real

from .wired import (
    FLOWER,
    NAMESPACE,
    QUEUE,
    REGION,
    Flower,
    Process,
    Samples,
    kubectl,
    policy_refusing,
    sample,
    scrape,
    total,
    wait_for,
    webhook_unreachable,
)

FLOWER_LOGIN = "ops:wired-fleet-flower-password"
RECONCILE = "gco_tasks.reconcile_endpoint"


@dataclass
class Wired:
    """The running fleet of the module and the handles the tests use."""

    env: dict[str, str]
    logs: Path
    store: EndpointStore
    broker: redis.Redis
    api: client.ApiClient
    plane: ControlPlane
    celery: Celery
    worker: Process
    flower_process: Process
    flower: Flower
    metrics_port: int

    def tails(self) -> str:
        return "\n".join(p.tail() for p in (self.worker, self.flower_process))

    def scrape(self) -> Samples:
        return wait_for("the worker's /metrics", lambda: scrape(self.metrics_port), log=self.tails)  # type: ignore[no-any-return]

    def call(self, name: str) -> AsyncResult:
        return self.celery.send_task(RECONCILE, args=[name], queue=QUEUE)

    def quiet(self) -> Samples:
        """Wait until nothing waits in the queue nor runs, twice in a row; the scrape then."""

        def still() -> Samples | None:
            samples = scrape(self.metrics_port)
            idle = samples is not None and sample(samples, "gco_queue_depth", queue=QUEUE) == 0
            return samples if idle and total(samples, "gco_tasks_in_progress") == 0 else None

        wait_for("a quiet fleet", lambda: still() and still(), log=self.tails)
        return self.scrape()

    def state(self, name: str) -> str | None:
        """The region's reported state of ``name`` (None before its first report)."""
        entry = ((self.store.get_item(name) or {}).get("region_status") or {}).get(REGION) or {}
        return entry.get("state")

    def create(self, name: str, **spec: Any) -> None:
        self.store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27", **spec}), [REGION]))

    def corrupt(self, name: str) -> None:
        """Make the record invalid as a hand edit of the table would (spec.port out of range)."""
        self.store.client.update_item(
            TableName=self.store.table_name,
            Key={"endpoint_name": {"S": name}},
            UpdateExpression="SET spec.port = :p",
            ExpressionAttributeValues={":p": {"N": "70000"}},
        )


def fleet_env(redis_url: str, dynamodb_url: str, kubeconfig: Path, workdir: Path) -> dict[str, str]:
    import os

    dropped = ("KUBE", "REDIS", "AWS_", "PROMETHEUS", "METRICS", "LOG_", "FLOWER", "RECONCILE", "INFERENCE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(SANDBOX_AWS_ENV)
    env.update(
        REGION=REGION,
        REDIS_URL=redis_url,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_url,
        KUBECONFIG=str(kubeconfig),
        INFERENCE_UNHEALTHY_THRESHOLD_SECONDS="1",
        WORKER_HEARTBEAT_FILE=str(workdir / "worker.heartbeat"),
        METRICS_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def wired(
    redis_server: RedisServer,
    dynamodb_server: DynamoDBServer,
    real_cluster: ControlPlane,
    real_api_client: client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Wired]:
    logs = tmp_path_factory.mktemp("wired")
    broker = redis.Redis.from_url(redis_server.url)
    broker.flushall()
    reset = urllib.request.Request(f"{dynamodb_server.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    reset_real(real_api_client)
    env = fleet_env(redis_server.url, dynamodb_server.url, real_cluster.kubeconfig, logs)
    store = EndpointStore.from_settings(load_settings(env))
    store.create_table()
    port, flower_port = free_port(), free_port()
    (logs / "prometheus").mkdir()
    worker_env = {
        **env,
        "METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(logs / "prometheus"),
        "LOG_FORMAT": "json",
    }
    args = ["worker", "-Q", QUEUE, "-c", "2", "-P", "prefork", "-n", "wired@%h", "-l", "INFO"]
    worker = Process("worker", [*args, "--without-mingle", "--without-gossip"], worker_env, logs)
    flower_env = {**env, "FLOWER_BASIC_AUTH": FLOWER_LOGIN}
    flower_args = [f"--port={flower_port}", "--address=127.0.0.1"]
    flower_process = Process("flower", flower_args, flower_env, logs, command=FLOWER)
    celery_client = Celery(
        "wired-client", broker=redis_server.url, backend=redis_server.url, set_as_current=False
    )
    celery_client.conf.update(task_default_queue=QUEUE, result_expires=600)
    fleet = Wired(
        env, logs, store, broker, real_api_client, real_cluster, celery_client, worker, flower_process,
        Flower(flower_port, FLOWER_LOGIN), port,
    )  # fmt: skip
    try:
        fleet.scrape()
        wait_for(
            "Flower seeing the worker online",
            lambda: any(
                name.startswith("wired@") and up
                for name, up in (fleet.flower.get("/api/workers?status=1") or {}).items()
            ),
            log=fleet.tails,
        )
        yield fleet
    finally:
        flower_process.stop()
        code = worker.stop()
        celery_client.close()
        broker.close()
    assert code == 0, worker.tail()


def deltas(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def test_metrics_after_reconciles_that_apply_fail_and_skip(wired: Wired) -> None:
    names = ["m-good", "m-refused", "m-invalid", "m-locked"]
    for name in names:
        wired.create(name)
    wired.corrupt("m-invalid")
    before = wired.quiet()
    lock = RegionState(wired.broker, REGION).endpoint_lock("m-locked", ttl_seconds=120)
    with policy_refusing(wired.api, "metrics", ["m-refused"]), lock as held:
        assert held
        calls = {name: wired.call(name) for name in names}
        ends = {name: call.get(timeout=60, propagate=False) for name, call in calls.items()}
    assert ends["m-good"]["result"] == "applied"
    assert ends["m-locked"] == {
        "endpoint": "m-locked", "actions": [], "state": None, "result": "skipped_locked",
        "skipped": "locked by another worker",
    }  # fmt: skip
    assert isinstance(ends["m-refused"], ReconcileFailed) and "422" in str(ends["m-refused"])
    assert isinstance(ends["m-invalid"], ReconcileFailed) and "spec.port" in str(ends["m-invalid"])
    # m-good's first report is the look its reconcile requeued (2 s later; again while the pods start)
    wait_for("m-good's looks to report it running", lambda: wired.state("m-good") == "running", 60)
    after = wired.quiet()

    def d(name: str, **labels: str) -> float:
        return deltas(before, after, name, **labels)

    results = {
        r: d("gco_reconcile_total", result=r)
        for r in ("applied", "noop", "deleted", "skipped_locked", "error")
    }
    looks = int(results["noop"])  # m-good's: each reads its rollout, applies nothing
    assert looks >= 1
    assert results == {"applied": 1, "noop": looks, "deleted": 0, "skipped_locked": 1, "error": 2}
    assert d("gco_reconcile_errors_total", reason="invalid_spec") == 1
    assert d("gco_reconcile_errors_total", reason="kube_invalid") == 1
    assert d("gco_reconcile_duration_seconds_count", result="error") == 2
    assert d("gco_lock_contention_total", lock="endpoint") == 1
    assert d("gco_lock_held_seconds_count", lock="endpoint") == 3 + looks, "all but the locked one"
    kube = {
        (verb, resource, code): d("gco_kube_requests_total", verb=verb, resource=resource, code=code)
        for verb, resource, code in [
            ("list", "deployments", "200"),  # none: ad hoc calls read their endpoint by name, no LIST
            # by name: m-good's and m-refused's primary and canary (absent); and, for the Events of
            # m-refused and m-invalid (no object was read or created to show it), their primary's uid
            ("get", "deployments", "404"),
            ("create", "deployments", "201"),  # m-good's, created (create-only)
            ("create", "deployments", "422"),  # m-refused's, denied by the policy
            ("create", "services", "201"),
            ("create", "ingresses", "201"),
            ("create", "events", "201"),  # Applied x2, ApplyFailed, InvalidSpec, Promoted (m-good)
        ]
    }
    assert kube == {
        ("list", "deployments", "200"): 0,
        ("get", "deployments", "404"): 6,
        ("create", "deployments", "201"): 1,
        ("create", "deployments", "422"): 1,
        ("create", "services", "201"): 2,
        ("create", "ingresses", "201"): 2,
        ("create", "events", "201"): 5,
    }
    assert d("gco_kube_events_total", outcome="created") == 5
    assert d("gco_dynamodb_requests_total", operation="GetItem", outcome="ok") == 3 + looks
    # two errors, and m-good's first report: `running` with its promotion in one write, or `creating`
    # first when its pods were not ready at the first look
    updates = d("gco_dynamodb_requests_total", operation="UpdateItem", outcome="ok")
    assert updates == 2 + min(looks, 2), (updates, looks)
    assert sample(after, "gco_tasks_in_progress", task=RECONCILE) == 0
    assert sample(after, "gco_reconcile_interval_seconds") == 15
    check_json_lines(wired.worker.text(), {name: call.id for name, call in calls.items()}, ends)

    fan_out_counts_the_region(wired)


def fan_out_counts_the_region(wired: Wired) -> None:
    """One fan-out: what it sent, the region's endpoints by the state each last reported (as the table
    holds them when it runs), when it finished."""
    before = wired.quiet()
    items = list(wired.store.scan_items())
    expected = dict.fromkeys(ENDPOINT_STATES, 0)
    for item in items:
        expected[(item.get("region_status", {}).get(REGION) or {}).get("state", "unknown")] += 1
    started = time.time()
    wired.celery.send_task("gco_tasks.fan_out", queue=QUEUE)

    def done() -> Samples | None:
        now = scrape(wired.metrics_port) or {}
        fanned = deltas(before, now, "gco_fanout_duration_seconds_count") == 1
        sent = deltas(before, now, "gco_fanout_messages_total", outcome="sent")
        reconciled = total(now, "gco_reconcile_total") - total(before, "gco_reconcile_total")
        return now if fanned and reconciled >= sent else None  # and the requeues of rollouts

    wait_for("the fan-out and every reconcile it sent", done, log=wired.tails)
    after = wired.quiet()
    sent = deltas(before, after, "gco_fanout_messages_total", outcome="sent")
    pending = deltas(before, after, "gco_fanout_messages_total", outcome="already_pending")
    # Only the endpoints that need work are sent, at most one message per record, counting those still
    # waiting (a rollout in progress requeues its reconcile, marked pending, ROLLOUT_REQUEUE_SECONDS).
    # What exactly a steady cycle sends is pinned by tests/integration/test_drift.py.
    assert sent + pending <= len(items), (sent, pending, len(items))
    assert {state: sample(after, "gco_endpoints", state=state) for state in ENDPOINT_STATES} == expected
    assert started <= sample(after, "gco_last_fanout_timestamp_seconds") <= time.time()
    assert (
        deltas(before, after, "gco_kube_requests_total", verb="list", resource="deployments", code="200") == 1
    )
    assert deltas(before, after, "gco_dynamodb_requests_total", operation="Scan", outcome="ok") >= 1
    text = wired.worker.text()
    no_arguments = "'hint'" not in text and "'taken_at'" not in text and '"kwargs"' not in text
    assert no_arguments, "no message's arguments (an older one's record, env values) in a log"


def check_json_lines(text: str, task_ids: dict[str, str], ends: dict[str, Any]) -> None:
    """Every log line of the worker is one JSON object with the region; each reconcile has exactly one
    line carrying its endpoint, task id, result and duration."""
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    printed = [line for line in lines if not line.startswith("{")]  # the banner and warnings: not logged
    assert not [line for line in printed if any(name in line for name in task_ids)], printed
    assert len(records) >= 10, text[-3000:]
    assert all(record["region"] == REGION and record["level"] and record["logger"] for record in records)
    for name, task_id in task_ids.items():
        mine = [r for r in records if r.get("task_id") == task_id and "duration_ms" in r]
        assert len(mine) == 1, (name, mine)
        (line,) = mine
        expected = "error" if isinstance(ends[name], ReconcileFailed) else ends[name]["result"]
        assert (line["endpoint"], line["result"]) == (name, expected)
        assert line["logger"] == "gco_tasks.telemetry" and line["duration_ms"] > 0
    assert any(r["logger"].startswith("celery") for r in records), "Celery's own lines are JSON too"


def test_task_outcomes_in_flower(wired: Wired) -> None:
    for name in ("f-invalid", "f-refused", "f-flaky", "f-locked"):
        wired.create(name)
    wired.corrupt("f-invalid")
    before = wired.quiet()
    lock = RegionState(wired.broker, REGION).endpoint_lock("f-locked", ttl_seconds=300)
    with (
        policy_refusing(wired.api, "flower", ["f-refused"]),
        webhook_unreachable(wired.api, "flaky", ["f-flaky"]) as heal,
        lock as held,
    ):
        assert held
        ids = {name: wired.call(name).id for name in ("f-invalid", "f-refused", "f-flaky", "f-locked")}
        retrying = wait_for(
            "Flower showing f-flaky retried",
            lambda: (
                (task := wired.flower.tasks().get(ids["f-flaky"])) and task.get("retries", 0) >= 1 and task
            ),
            log=wired.tails,
        )
        assert retrying["state"] in ("RETRY", "RECEIVED", "STARTED"), retrying
        heal()  # the webhook is gone: the next attempt goes through
        shown = {
            name: wait_for(
                f"Flower showing {name} finished",
                lambda task_id=task_id: wired.flower.task(task_id, "SUCCESS", "FAILURE"),
                timeout=120,
                log=wired.tails,
            )
            for name, task_id in ids.items()
        }
    for name in ("f-invalid", "f-refused"):  # permanent: FAILED with the reason, never retried
        assert shown[name]["state"] == "FAILURE" and shown[name]["retries"] == 0, shown[name]
        assert shown[name]["exception"].startswith("ReconcileFailed(") and shown[name]["retried"] is None
    assert "spec.port" in shown["f-invalid"]["exception"]
    assert "422" in shown["f-refused"]["exception"] and "gco-test-flower" in shown["f-refused"]["exception"]
    flaky = shown["f-flaky"]  # transient: retried with backoff, then done
    assert flaky["state"] == "SUCCESS" and flaky["retries"] >= 1 and flaky["retried"] is not None, flaky
    assert "'result': 'applied'" in flaky["result"]
    locked = shown["f-locked"]  # a skip is a success that says so
    assert locked["state"] == "SUCCESS" and "'result': 'skipped_locked'" in locked["result"], locked
    states = [AsyncResult(task_id, app=wired.celery).state for task_id in ids.values()]
    assert states == ["FAILURE", "FAILURE", "SUCCESS", "SUCCESS"], "the result backend agrees"
    after = wired.quiet()
    attempts = deltas(before, after, "gco_reconcile_errors_total", reason="kube_unavailable")
    assert attempts == flaky["retries"], "each failed attempt of f-flaky is one error with its reason"
    text = wired.worker.text()
    assert "raised unexpected" not in text, "permanent failures are expected ends: no traceback"
    assert "Retry in" in text, "Celery logs the backoff of each retry"


def test_kubectl_describe_shows_the_fleets_events(wired: Wired) -> None:
    name = "e-events"  # never Ready (kwok keeps a 'crashloop' image in CrashLoopBackOff): the watchdog acts
    wired.create(name, image="example.com/crashloop:1")
    assert wired.call(name).get(timeout=60)["result"] == "applied"
    with policy_refusing(wired.api, "events", [name]):
        wired.store.update_spec(name, lambda spec: spec.with_changes(image="example.com/crashloop:2"))
        assert isinstance(wired.call(name).get(timeout=60, propagate=False), ReconcileFailed)
    wired.corrupt(name)
    assert isinstance(wired.call(name).get(timeout=60, propagate=False), ReconcileFailed)
    networking = client.NetworkingV1Api(wired.api)

    def ingress_gone() -> bool:
        wired.celery.send_task("gco_tasks.watchdog", queue=QUEUE)  # the threshold is 1 s
        time.sleep(1.2)
        names = [i.metadata.name for i in networking.list_namespaced_ingress(NAMESPACE).items]
        return f"inference-{name}" not in names

    wait_for("the watchdog withholding the Ingress", ingress_gone, log=wired.tails)
    kubectl_path = find_binaries().kubectl
    described = kubectl(kubectl_path, wired.plane.kubeconfig, "describe", "deployment", name, "-n", NAMESPACE)
    events = described.split("\nEvents:", 1)[1]
    rows = {}
    for reason, words in {
        "Applied": f"created Deployment/{name}, Service/{name}, Ingress/inference-{name}",
        "ApplyFailed": "422",
        "InvalidSpec": "spec.port",
        "IngressWithheld": f"Ingress/inference-{name} removed",
    }.items():
        rows[reason] = next((line.split() for line in events.splitlines() if reason in line.split()), [])
        assert "gco-tasks" in rows[reason], f"{reason} from gco-tasks missing:\n{described}"
        assert words in " ".join(events.split()), f"{words!r} missing:\n{described}"
    assert [rows[reason][0] for reason in rows] == ["Normal", "Warning", "Warning", "Warning"]


def test_beat_serves_its_sends_and_the_worker_runs_its_fan_outs(wired: Wired) -> None:
    before = wired.quiet()
    port = free_port()
    env = {**wired.env, "METRICS_PORT": str(port), "RECONCILE_INTERVAL_SECONDS": "2"}
    started = time.time()
    beat = Process("beat", ["beat", "-s", str(wired.logs / "beat-schedule"), "-l", "INFO"], env, wired.logs)
    try:

        def sent_fan_outs() -> Samples | None:
            samples = scrape(port)
            return (
                samples
                if samples and sample(samples, "gco_beat_sent_total", task="gco_tasks.fan_out") >= 2
                else None
            )

        seen = wait_for("beat sending fan-outs", sent_fan_outs, log=lambda: beat.tail() + wired.tails())
        assert sample(seen, "gco_reconcile_interval_seconds") == 2
        assert ("gco_queue_depth", frozenset({"region": REGION, "queue": QUEUE}.items())) in seen
        assert ("process_resident_memory_bytes", frozenset()) in seen, "beat's own process metrics"
        ran = wait_for(
            "the worker running beat's fan-outs",
            lambda: (
                (s := scrape(wired.metrics_port))
                and deltas(before, s, "gco_fanout_duration_seconds_count") >= 1
                and s
            ),
            log=wired.tails,
        )
        assert sample(ran, "gco_last_fanout_timestamp_seconds") >= started
    finally:
        code = beat.stop()
    assert code == 0, beat.tail()
    wired.quiet()
