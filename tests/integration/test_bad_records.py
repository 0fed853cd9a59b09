"""One bad record never stalls a region: hypothesis-made records through the real store and a real worker.

Each example writes a few malformed records straight into moto's DynamoDB (wire format, so anything
DynamoDB accepts: number, string and binary sets, binary, deep maps, huge strings, wrong types, names
that cannot be Kubernetes names), checks they were really stored, edits two good endpoints, and sends
ONE fan-out through Celery's in-process worker on a private redis-server. No beat runs, so whatever the
good endpoints show afterwards came from that one cycle: each must have its new spec applied and a
status about its current version, whatever the bad ones hold; and every bad record that targets the
region must get a status of its own (an ``error`` naming the field, or a state if it was valid after
all). The fan-out itself must never fail. Runs on both servers (``[standin]`` and ``[real]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import task_failure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gco_tasks.adapters.dynamo_client import decode_item, encode
from gco_tasks.core import conventions as names
from gco_tasks.core.errors import ReconcileFailed
from gco_tasks.core.plan import endpoint_name_of
from gco_tasks.core.records import Endpoint, RecordHeader, parse_spec
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker import tasks
from gco_tasks.worker.fleet import Fleet

from .harness import REGION, wait_for
from .test_fleet_worker import in_process_worker

GOOD = ("good-a", "good-b")


# --------------------------------------------------------------------------- the worker


@pytest.fixture()
def worker(fleet: Fleet, redis_url: str) -> Iterator[Any]:
    with in_process_worker(fleet, redis_url, concurrency=4) as running:
        yield running


@pytest.fixture()
def failures() -> Iterator[list[tuple[str, BaseException]]]:
    """(task name, exception) of every task that failed meanwhile (Celery's ``task_failure`` signal)."""
    seen: list[tuple[str, BaseException]] = []

    def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        seen.append((str(getattr(sender, "name", sender)), exception or RuntimeError("?")))

    task_failure.connect(on_failure, weak=False)
    yield seen
    task_failure.disconnect(on_failure)


# --------------------------------------------------------------------------- bad records (wire format)

text = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12)
numbers = st.integers(min_value=-(10**12), max_value=10**12).map(str)


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for level in range(depth):
        value = {"M": {f"k{level}": value}}
    return value


BAD_VALUES = st.one_of(
    st.sets(numbers, min_size=1, max_size=4).map(lambda s: {"NS": sorted(s)}),
    st.sets(text, min_size=1, max_size=4).map(lambda s: {"SS": sorted(s)}),
    st.sets(st.binary(min_size=1, max_size=8), min_size=1, max_size=3).map(lambda s: {"BS": sorted(s)}),
    st.binary(min_size=1, max_size=64).map(lambda b: {"B": b}),
    numbers.map(lambda n: {"N": n}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.integers(min_value=1_000, max_value=60_000).map(lambda n: {"S": "x" * n}),
    text.map(lambda s: {"S": s}),
    st.integers(min_value=2, max_value=25).map(nested),
    st.lists(st.one_of(text.map(lambda s: {"S": s}), numbers.map(lambda n: {"N": n})), max_size=4).map(
        lambda values: {"L": values}
    ),
)
TOP_FIELDS = ("desired_state", "target_regions", "namespace", "spec", "ingress_path", "labels", "extra_field")
SPEC_FIELDS = (
    "image",
    "replicas",
    "port",
    "env",
    "args",
    "command",
    "autoscaling",
    "canary",
    "resources",
    "tolerations",
    "node_selector",
    "region_image_uris",
    "unknown_spec_field",
)
PATHS = st.sampled_from([(field,) for field in TOP_FIELDS] + [("spec", field) for field in SPEC_FIELDS])
BAD_NAMES = st.sampled_from(
    ["Bad_Name", "with space", "ünïcode", "a/b", "x" * 300, "1starts-with-digit", "-x"]
)


@st.composite
def bad_record(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """A record GCO's CLI would write, then 1-3 of its fields replaced by what DynamoDB also accepts."""
    name = f"bad-{index}" if draw(st.booleans()) else f"{draw(BAD_NAMES)}-{index}"
    item = encode(Endpoint.new("placeholder", parse_spec({"image": "nginx:1.27"}), [REGION]).to_item())["M"]
    item["endpoint_name"] = {"S": name}
    del item["ingress_path"]  # GCO's default, /inference/{name}
    for path in draw(st.lists(PATHS, min_size=1, max_size=3, unique=True)):
        value = draw(BAD_VALUES)
        if len(path) == 1:
            item[path[0]] = value
        elif "M" in item["spec"]:
            item["spec"]["M"][path[1]] = value
    return item


bad_records = st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.tuples(*[bad_record(i) for i in range(n)]).map(list)
)


def normalized(value: Any) -> Any:
    """An attribute value (or item) with its sets in one order: DynamoDB keeps no order in a set."""
    if isinstance(value, dict):
        return {
            key: sorted(inner) if key in ("SS", "NS", "BS") else normalized(inner)
            for key, inner in value.items()
        }
    if isinstance(value, list):
        return [normalized(inner) for inner in value]
    return value


# --------------------------------------------------------------------------- the property


def region_status(item: dict[str, Any] | None) -> dict[str, Any]:
    status = (item or {}).get("region_status")
    entry = status.get(REGION) if isinstance(status, dict) else None
    return dict(entry) if isinstance(entry, dict) else {}


def deployment_env(fleet: Fleet, name: str) -> dict[str, str]:
    for obj in fleet.cluster.list_objects(names.endpoint_selector(name), ["Deployment"]):
        if obj["metadata"]["name"] == name:
            env = obj["spec"]["template"]["spec"]["containers"][0].get("env") or []
            return {e["name"]: e.get("value", "") for e in env}
    return {}


def good_applied(fleet: Fleet, name: str, round_: str) -> bool:
    item = fleet.store.get_item(name) or {}
    status = region_status(item)
    current = status.get("observed_updated_at") == item.get("updated_at") and status.get("state")
    return bool(current) and deployment_env(fleet, name).get("ROUND") == round_


def remove_bad(fleet: Fleet, stored: list[str]) -> None:
    """Delete the example's records and whatever objects a record valid after all made."""
    for name in stored:
        fleet.store.client.delete_item(TableName=fleet.store.table_name, Key={"endpoint_name": {"S": name}})
    for obj in fleet.cluster.list_objects(names.MANAGED_SELECTOR):
        if endpoint_name_of(obj, set(GOOD)) not in GOOD:
            fleet.cluster.delete(obj["kind"], obj["metadata"]["name"])


def test_bad_records_never_stop_the_good_ones_in_the_same_cycle(
    fleet: Fleet, worker: Any, failures: list[tuple[str, BaseException]]
) -> None:
    for name in GOOD:
        fleet.store.create(Endpoint.new(name, parse_spec({"image": "nginx:1.27"}), [REGION]))
    rounds = {"examples": 0, "stored": 0, "targeting": 0}

    @settings(
        max_examples=12,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(bad=bad_records)
    def one_cycle(bad: list[dict[str, Any]]) -> None:
        round_ = str(rounds["examples"])
        rounds["examples"] += 1
        failures.clear()
        for name in GOOD:
            fleet.store.update_spec(name, lambda spec: spec.with_changes(env={"ROUND": round_}))
        stored = []
        for item in bad:
            fleet.store.client.put_item(TableName=fleet.store.table_name, Item=item)
            name = item["endpoint_name"]["S"]
            raw = fleet.store.client.get_item(
                TableName=fleet.store.table_name, Key={"endpoint_name": {"S": name}}, ConsistentRead=True
            ).get("Item")
            assert raw is not None and normalized(raw) == normalized(item), f"{name!r} was not stored"
            stored.append(name)
        rounds["stored"] += len(stored)
        targeting = [n for n in stored if RecordHeader.from_item(decode_item(_raw(fleet, n))).targets(REGION)]
        rounds["targeting"] += len(targeting)
        try:
            tasks.fan_out.apply_async(queue=fleet.settings.queue)
            wait_for(
                lambda: (
                    all(good_applied(fleet, n, round_) for n in GOOD)
                    and all(region_status(fleet.store.get_item(n)) for n in targeting)
                ),
                "the good endpoints applied and every bad record reported, after one fan-out",
                timeout=60,
            )
            assert [name for name, _ in failures if name == "gco_tasks.fan_out"] == []
            unexpected = [(n, e) for n, e in failures if not isinstance(e, ReconcileFailed)]
            assert unexpected == []
            for name in targeting:
                status = region_status(fleet.store.get_item(name))
                if status["state"] == "error":
                    assert ": " in status["error"] and len(status["error"]) < 2100, status["error"][:200]
        finally:
            remove_bad(fleet, stored)

    one_cycle()
    assert rounds["examples"] >= 10 and rounds["stored"] >= rounds["examples"], rounds
    assert rounds["targeting"] >= rounds["examples"] // 2, rounds


def _raw(fleet: Fleet, name: str) -> dict[str, Any]:
    key = {"endpoint_name": {"S": name}}
    found: dict[str, Any] = fleet.store.client.get_item(TableName=fleet.store.table_name, Key=key)["Item"]
    return found


def test_a_name_that_cannot_be_a_kubernetes_name_is_an_error_without_asking_the_api_server(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ad hoc (no snapshot: the reconciler reads for itself), a name like ``Bad_Name`` would go into a
    label selector and the API server would refuse the LIST (400), leaving no status at all."""
    item = encode(Endpoint.new("placeholder", parse_spec({"image": "nginx:1.27"}), [REGION]).to_item())["M"]
    item["endpoint_name"] = {"S": "Bad_Name"}
    fleet.store.client.put_item(TableName=fleet.store.table_name, Item=item)
    requests: list[str] = []
    rest = fleet.cluster.api_client.rest_client
    send = rest.request
    monkeypatch.setattr(rest, "request", lambda *a, **k: requests.append(a[1]) or send(*a, **k))
    result = reconcile(fleet, "Bad_Name")
    assert (result.kind.value, result.state) == ("invalid", "error") and requests == []
    status = region_status(fleet.store.get_item("Bad_Name"))
    assert status["state"] == "error"
    assert status["error"].startswith(
        "invalid endpoint 'Bad_Name': endpoint_name: must be lower-case letters"
    )
