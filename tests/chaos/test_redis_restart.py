"""Redis restarts, both kinds: a Redis that keeps nothing on disk (the queue, the schedule, the locks and
the marks are all gone) and one that keeps an append-only file (everything comes back, locks and marks
with their TTLs). Redis is killed with ``kill -9`` while the fleet runs, and started again on its port.

What must hold: the worker and beat processes stay up (neither exits), beat re-creates its schedule
when it is gone, fan-outs resume within two intervals of Redis answering again (shown by an endpoint
created while Redis was down reaching ``running``), no endpoint is left marked pending without a TTL,
and nothing is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gco_tasks.config import Settings
from gco_tasks.conventions import RegionKeys

from .harness import REGION, RedisNode, wait_until

INTERVAL = 2.0
SLACK = 4.0  # a worker's reconnect backoff step (2 s) and scheduling on a shared machine


def pending_without_ttl(node: RedisNode, settings: Settings) -> list[str]:
    client = node.client()
    try:
        keys = client.keys(RegionKeys(REGION).pending("*"))
        return [key.decode() for key in keys if not 0 < client.ttl(key) <= settings.message_ttl_seconds]
    finally:
        client.close()


@pytest.mark.parametrize("aof", [False, True], ids=["no-persistence", "aof"])
def test_redis_restart(make_chaos: Any, tmp_path: Path, aof: bool) -> None:
    node = RedisNode(tmp_path / "redis", aof=aof).start()
    chaos = make_chaos(node.url)
    try:
        chaos.deploy("alpha", "beta")
        chaos.processes.worker("worker", concurrency=2)
        chaos.processes.beat()
        wait_until(lambda: chaos.converged("alpha", "beta"), 60, "alpha and beta running")

        chaos.stall_apply("beta", 3.0)  # a reconcile in flight (unacknowledged) when Redis dies
        chaos.scale("beta", 2)
        wait_until(chaos.stall_begun, 20, "beta's apply in flight")
        node.kill()
        wait_until(
            lambda: (
                chaos.processes.logged("beat", "Redis does not answer")
                and chaos.processes.logged("worker", "Connection to broker lost")
            ),
            30,
            "worker and beat to notice Redis is gone",
        )
        chaos.deploy("gamma")  # the desired state moves on while Redis is down
        chaos.scale("alpha", 3)
        node.start()

        recovered = wait_until(lambda: chaos.converged("gamma"), 60, "gamma running after the restart")
        kind = "AOF" if aof else "no persistence"
        chaos.record(f"Redis restart ({kind}) -> fan-outs resume, new endpoint running", recovered)
        assert chaos.processes.alive("worker") and chaos.processes.alive("beat"), chaos.processes.logs_text()
        assert recovered <= 2 * INTERVAL + SLACK, chaos.processes.logs_text()
        if not aof:
            assert chaos.processes.logged("beat", "schedule is gone from Redis")
        chaos.nothing_lost()
        assert pending_without_ttl(node, chaos.settings) == []
    finally:
        chaos.processes.stop_all()
        node.stop()
