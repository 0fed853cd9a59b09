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
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes

from bench.common import (
    DYNAMO_WRITE_OPS,
    K8S_WRITE_VERBS,
    NEW_IMAGE,
    ORIGINAL_DELETES_404,
    ORIGINAL_DYNAMO_WRITES,
    ORIGINAL_GETS,
    ORIGINAL_INTERVAL_SECONDS,
    REGION,
    BenchEndpoint,
    create_records,
    endpoint_mix,
    make_fleet,
    median_counts,
    running_services,
    settled,
    summary_ms,
)
from bench.report import render
from bench.worker import celery_section
from gco_tasks.core.hint import Hint, parse_hint
from gco_tasks.flows.fanout import fan_out
from gco_tasks.flows.reconciler import reconcile
from gco_tasks.worker.fleet import Fleet

log = logging.getLogger("bench.fleet")

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
    messages: list[tuple[str, Hint | None]] = []

    def send(name: str, hint: Hint | None) -> None:
        wired = json.loads(json.dumps(hint.as_message())) if hint is not None else None
        messages.append((name, parse_hint(wired)))

    meter.reset()
    start = time.perf_counter()
    fan_out(fleet, send)
    fanned = time.perf_counter()
    durations: list[float] = []
    actions: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for name, hint in messages:
        began = time.perf_counter()
        result = reconcile(fleet, name, hint).as_dict()
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
        "steady": steady_summary(steady, endpoints),
        "change": {
            "edited": len(edited),
            "edited_kinds": dict(sorted(Counter(e.kind for e in edited).items())),
            "cycle": change.to_json(),
            "until_quiet": after_change,
        },
    }


def steady_summary(steady: Sequence[Cycle], endpoints: int) -> dict[str, Any]:
    """Medians and maxima over the steady-state cycles."""
    reconciles = [d for cycle in steady for d in cycle.reconcile_seconds]
    walls = [cycle.wall_seconds for cycle in steady]
    return {
        "cycles": len(steady),
        "per_cycle": [cycle.to_json() for cycle in steady],
        "k8s_requests_median": median_counts([cycle.cost.k8s for cycle in steady]),
        "k8s_by_verb_median": median_counts([cycle.cost.k8s_by_verb for cycle in steady]),
        "k8s_writes_max": max((cycle.cost.k8s_writes for cycle in steady), default=0),
        "dynamo_writes_max": max((cycle.cost.dynamo_writes for cycle in steady), default=0),
        "dynamo_calls_median": median_counts([cycle.cost.dynamo for cycle in steady]),
        "redis_commands_median": statistics.median(c.cost.redis_commands for c in steady) if steady else 0,
        "actions_total": sum(sum(cycle.actions.values()) for cycle in steady),
        "fan_out_ms": summary_ms([cycle.fan_out_seconds for cycle in steady]),
        "reconcile_ms": summary_ms(reconciles),
        "cycle_wall_ms_median": round(statistics.median(walls) * 1000, 1) if walls else None,
        "endpoints_per_second": round(endpoints / statistics.median(walls), 1) if walls else None,
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
