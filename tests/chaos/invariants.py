"""Nothing lost, counted from outside: the one check every chaos scenario ends with.

It reads the table (boto3) and the live objects (the official client) and compares the fields each record
sets with what Kubernetes holds, by the documented names (``<name>``, ``<name>-canary``,
``inference-<name>``), never through the fleet's own rendering or plan, so a defect there cannot hide.
``problems`` lists what is wrong (empty: nothing lost); ``assert_nothing_lost`` waits for it to be empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from kubernetes import client
from kubernetes.utils import parse_quantity

from .harness import wait_until

#: The region state each desired state converges to.
EXPECTED_STATE = {"running": "running", "deploying": "running", "stopped": "stopped"}
TYPE_LABEL, ENDPOINT_LABEL = "gco.io/type", "gco.io/endpoint"
KINDS = ("Deployment", "Service", "Ingress", "HorizontalPodAutoscaler")


@dataclass(frozen=True)
class Scenario:
    """What the scenario asked of each endpoint it wrote: ``intents`` maps a name to the last desired state
    (``running``, ``stopped`` or ``deleted``); ``invalid`` names the records it made invalid on purpose (the
    only ones allowed to end in ``error``)."""

    region: str
    namespace: str
    intents: Mapping[str, str]
    invalid: frozenset[str] = field(default_factory=frozenset)


# --------------------------------------------------------------------------------------------------
# Reading (the official client; no selector, so an unlabelled leftover is seen too)
# --------------------------------------------------------------------------------------------------


def live_objects(api_client: client.ApiClient, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Deployment, Service, Ingress and HPA in ``namespace`` as plain dicts, by (kind, name)."""
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    networking, autoscaling = client.NetworkingV1Api(api_client), client.AutoscalingV2Api(api_client)
    listings: dict[str, Callable[..., Any]] = {
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "Ingress": networking.list_namespaced_ingress,
        "HorizontalPodAutoscaler": autoscaling.list_namespaced_horizontal_pod_autoscaler,
    }
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, listing in listings.items():
        response = listing(namespace, _preload_content=False)
        for item in _json(response)["items"]:
            found[(kind, item["metadata"]["name"])] = item
    return found


def _json(response: Any) -> Any:
    return json.loads(response.data)


def table_items(table_name: str, endpoint_url: str, region: str) -> list[dict[str, Any]]:
    """Every item of the table, read with boto3's resource (not the fleet's store), as plain Python."""
    table = boto3.resource("dynamodb", endpoint_url=endpoint_url, region_name=region).Table(table_name)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**params)
        items += [plain(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --------------------------------------------------------------------------------------------------
# Judging (pure)
# --------------------------------------------------------------------------------------------------


def problems(
    items: Iterable[Mapping[str, Any]], live: Mapping[tuple[str, str], Mapping[str, Any]], scenario: Scenario
) -> list[str]:
    """Everything lost, stale or left behind, one sentence each."""
    records = {str(item["endpoint_name"]): item for item in items}
    found: list[str] = []
    claimed: set[tuple[str, str]] = set()
    for name, intent in sorted(scenario.intents.items()):
        mine = _objects_of(name, live)
        claimed |= set(mine)
        item = records.get(name)
        if intent == "deleted":
            if item is not None:
                state = _status(item, scenario.region).get("state")
                found.append(f"{name}: deleted but its record is not purged (region state {state!r})")
            if mine:
                found.append(f"{name}: deleted but objects remain: {_keys(mine)}")
            continue
        if item is None:
            found.append(f"{name}: record gone although it was never deleted")
            continue
        found += record_problems(name, item, mine, scenario)
    for name in sorted(set(records) - set(scenario.intents)):
        found.append(f"{name}: a record the scenario never wrote")
    for key, obj in sorted(live.items()):
        labels = obj["metadata"].get("labels") or {}
        if key not in claimed and TYPE_LABEL in labels:
            found.append(f"{labels.get(ENDPOINT_LABEL)}: {key[0]}/{key[1]} exists without a record")
    return found


def record_problems(
    name: str, item: Mapping[str, Any], mine: Mapping[tuple[str, str], Mapping[str, Any]], scenario: Scenario
) -> list[str]:
    """What keeps one record from being converged: its region state and each object's fields."""
    status = _status(item, scenario.region)
    state = status.get("state")
    if name in scenario.invalid:
        if state != "error" or not status.get("error"):
            return [f"{name}: invalid on purpose but region state {state!r} (error {status.get('error')!r})"]
        return []
    desired = str(item.get("desired_state"))
    expected_state = EXPECTED_STATE.get(desired)
    found: list[str] = []
    if state != expected_state:
        detail = f": {status['error']}" if status.get("error") else ""
        found.append(f"{name}: region state {state!r}, expected {expected_state!r}{detail}")
    elif status.get("observed_updated_at") not in (None, item.get("updated_at")):
        found.append(
            f"{name}: status is about {status['observed_updated_at']}, the record is {item.get('updated_at')}"
        )
    expected = expected_objects(name, item)
    for key in sorted(set(mine) - set(expected)):
        found.append(f"{name}: {key[0]}/{key[1]} should not exist ({desired})")
    for key, check in sorted(expected.items()):
        obj = mine.get(key)
        if obj is None:
            found.append(f"{name}: {key[0]}/{key[1]} missing")
            continue
        if obj["metadata"].get("deletionTimestamp"):
            found.append(f"{name}: {key[0]}/{key[1]} is being deleted")
        found += [f"{name}: {key[0]}/{key[1]} {wrong}" for wrong in check(obj)]
    return found


Check = Callable[[Mapping[str, Any]], list[str]]


def expected_objects(name: str, item: Mapping[str, Any]) -> dict[tuple[str, str], Check]:
    """The objects a record asks for (README: stopped keeps only the Deployment at 0 and its Service),
    each with the check of the fields the record sets."""
    spec = item.get("spec") or {}
    stopped = item.get("desired_state") == "stopped"
    autoscaling = spec.get("autoscaling") or {}
    hpa = bool(autoscaling.get("enabled")) and not stopped
    canary = spec.get("canary") if not stopped else None
    if stopped:
        replicas: tuple[int, int] = (0, 0)
    elif hpa:
        replicas = (int(autoscaling.get("min_replicas", 1)), int(autoscaling.get("max_replicas", 10)))
    else:
        replicas = (int(spec.get("replicas", 1)),) * 2
    image = spec["image"]
    expected: dict[tuple[str, str], Check] = {
        ("Deployment", name): lambda obj: deployment_problems(obj, spec, image, replicas, not stopped),
        ("Service", name): lambda obj: service_problems(obj, spec),
    }
    if stopped:
        return expected
    expected[("Ingress", f"inference-{name}")] = lambda obj: ingress_problems(obj, item, canary is not None)
    if hpa:
        expected[("HorizontalPodAutoscaler", name)] = lambda obj: hpa_problems(obj, name, autoscaling)
    if canary:
        count = int(canary.get("replicas", 1))
        expected[("Deployment", f"{name}-canary")] = lambda obj: deployment_problems(
            obj, spec, canary["image"], (count, count), True
        )
        expected[("Service", f"{name}-canary")] = lambda obj: service_problems(obj, spec)
    return expected


def deployment_problems(
    obj: Mapping[str, Any], spec: Mapping[str, Any], image: str, replicas: tuple[int, int], ready: bool
) -> list[str]:
    found: list[str] = []
    live_spec, status = obj.get("spec") or {}, obj.get("status") or {}
    count = live_spec.get("replicas")
    if count is None or not replicas[0] <= count <= replicas[1]:
        want = replicas[0] if replicas[0] == replicas[1] else f"{replicas[0]}..{replicas[1]}"
        found.append(f"replicas {count}, the record says {want}")
    containers = live_spec.get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        return [*found, "has no container"]
    container = containers[0]
    if container.get("image") != image:
        found.append(f"image {container.get('image')!r}, the record says {image!r}")
    env = {var["name"]: var.get("value") for var in container.get("env") or []}
    if "env" in spec and env != {k: str(v) for k, v in spec["env"].items()}:
        found.append(f"env {sorted(env)}, the record says {sorted(spec['env'])} (or other values)")
    if spec.get("args") is not None:
        args = container.get("args") or []
        if args[: len(spec["args"])] != list(spec["args"]):
            found.append(f"args {args}, the record says {list(spec['args'])} first")
    if "port" in spec:
        ports = [p.get("containerPort") for p in container.get("ports") or []]
        if ports != [int(spec["port"])]:
            found.append(f"container ports {ports}, the record says {spec['port']}")
    found += _resource_problems(container.get("resources") or {}, spec.get("resources") or {})
    if ready and count:
        done = (
            (status.get("observedGeneration") or 0) >= obj["metadata"].get("generation", 0)
            and status.get("updatedReplicas") == count
            and status.get("readyReplicas") == count
        )
        if not done:
            ready_now, updated = status.get("readyReplicas"), status.get("updatedReplicas")
            found.append(f"not rolled out (ready {ready_now}, updated {updated} of {count}) but reported so")
    return found


def _resource_problems(live: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    found = []
    for side in ("requests", "limits"):
        for resource, quantity in (wanted.get(side) or {}).items():
            have = (live.get(side) or {}).get(resource)
            if have is None or _quantity(have) != _quantity(quantity):
                found.append(f"resources.{side}.{resource} {have!r}, the record says {quantity!r}")
    return found


def _quantity(value: object) -> Decimal:
    """A Kubernetes quantity as a number (``500m`` == ``0.5``), by the official client's parser."""
    parsed: Decimal = parse_quantity(str(value))  # type: ignore[no-untyped-call]
    return parsed


def service_problems(obj: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    targets = [p.get("targetPort") for p in (obj.get("spec") or {}).get("ports") or []]
    port = int(spec.get("port", 8000))
    return [] if targets == [port] else [f"targetPort {targets}, the record says {port}"]


def ingress_problems(obj: Mapping[str, Any], item: Mapping[str, Any], canary: bool) -> list[str]:
    name = str(item["endpoint_name"])
    path = item.get("ingress_path") or f"/inference/{name}"
    rules = (obj.get("spec") or {}).get("rules") or []
    paths = [p for rule in rules for p in (rule.get("http") or {}).get("paths") or []]
    found = []
    if [p.get("path") for p in paths] != [path]:
        found.append(f"paths {[p.get('path') for p in paths]}, the record says {path!r}")
    backends = [p.get("backend", {}).get("service", {}).get("name") for p in paths]
    if not canary and backends != [name]:
        found.append(f"backends {backends}, the record says {name!r}")
    return found


def hpa_problems(obj: Mapping[str, Any], name: str, autoscaling: Mapping[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    bounds = (spec.get("minReplicas"), spec.get("maxReplicas"))
    wanted = (int(autoscaling.get("min_replicas", 1)), int(autoscaling.get("max_replicas", 10)))
    found = [] if bounds == wanted else [f"bounds {bounds}, the record says {wanted}"]
    target = (spec.get("scaleTargetRef") or {}).get("name")
    if target != name:
        found.append(f"scales {target!r}, not {name!r}")
    return found


def _objects_of(
    name: str, live: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The endpoint's objects: labelled as its own, or carrying one of its names (an unlabelled leftover)."""
    names = {name, f"{name}-canary", f"inference-{name}"}
    return {
        key: obj
        for key, obj in live.items()
        if (obj["metadata"].get("labels") or {}).get(ENDPOINT_LABEL) == name
        or (key[1] in names and TYPE_LABEL in (obj["metadata"].get("labels") or {}))
    }


def _status(item: Mapping[str, Any], region: str) -> dict[str, Any]:
    return dict(((item.get("region_status") or {}).get(region)) or {})


def _keys(objects: Mapping[tuple[str, str], Any]) -> list[str]:
    return sorted(f"{kind}/{name}" for kind, name in objects)


def plain(value: Any) -> Any:
    """A DynamoDB item as plain Python (Decimal -> int or float, sets -> sorted lists)."""
    if isinstance(value, Mapping):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [plain(inner) for inner in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(inner) for inner in value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# --------------------------------------------------------------------------------------------------
# Waiting
# --------------------------------------------------------------------------------------------------


def assert_nothing_lost(
    read_items: Callable[[], Iterable[Mapping[str, Any]]],
    api_client: client.ApiClient,
    scenario: Scenario,
    timeout: float = 30.0,
    logs: Callable[[], str] = str,
) -> float:
    """Wait (within ``timeout``) until ``problems`` is empty; the seconds it took. Fails with the list."""
    last: list[str] = []

    def clean() -> bool:
        last[:] = problems(read_items(), live_objects(api_client, scenario.namespace), scenario)
        return not last

    try:
        return wait_until(clean, timeout, "nothing lost", pause=0.25)
    except AssertionError:
        raise AssertionError("something lost or not converged:\n" + "\n".join(last) + "\n" + logs()) from None
