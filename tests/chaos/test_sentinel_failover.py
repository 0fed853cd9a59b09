"""Redis failover with Sentinel: a primary, a replica and three sentinels (Debian's ``redis-sentinel``)
on loopback; the fleet reaches Redis only through ``REDIS_URL=sentinel://...;sentinel://...`` and
``REDIS_SENTINEL_MASTER``. The primary is killed with ``kill -9``; the sentinels promote the replica.

What must hold: the worker and beat follow the new primary by themselves (the broker through kombu's
Sentinel transport, beat through RedBeat's ``sentinels`` options, our locks, pending marks and
watchdog clocks through ``Sentinel.master_for``), fan-outs resume, an endpoint created after the
kill converges, and nothing is lost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.clusters import Cluster

from .harness import RedisNode, SentinelNode, started, wait_until

MASTER = "gco-redis"


def test_primary_killed_fleet_follows_the_new_primary(
    cluster: Cluster, make_chaos: Any, tmp_path: Path
) -> None:
    primary = RedisNode(tmp_path / "primary")
    replica = RedisNode(tmp_path / "replica", extra=("--replicaof", "127.0.0.1", str(primary.port)))
    sentinels = [SentinelNode(tmp_path / f"sentinel{i}", primary.port, MASTER) for i in range(3)]
    with started(primary, replica, *sentinels):
        wait_until(
            lambda: replica.client().info("replication")["master_link_status"] == "up", 20, "replication"
        )
        url = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in sentinels) + "/0"
        chaos = make_chaos(url, REDIS_SENTINEL_MASTER=MASTER)
        chaos.deploy("alpha", "beta")
        chaos.processes.worker("worker", concurrency=2)
        chaos.processes.beat()
        wait_until(lambda: chaos.converged("alpha", "beta"), 60, "alpha and beta running")

        primary.kill()
        killed = time.monotonic()
        chaos.deploy("gamma")
        chaos.stop("alpha")  # stopped and deleted during the failover: converged on the new primary
        chaos.delete("beta")
        promoted = wait_until(
            lambda: sentinels[0].primary() == ("127.0.0.1", replica.port), 30, "the replica promoted"
        )
        recovered = wait_until(lambda: chaos.converged("gamma"), 60, "gamma running on the new primary")
        chaos.record("Sentinel failover: replica promoted (sentinels, down-after 1 s)", promoted)
        chaos.record(
            "Sentinel failover: kill -9 of the primary -> new endpoint running", time.monotonic() - killed
        )
        assert chaos.processes.alive("worker") and chaos.processes.alive("beat"), chaos.processes.logs_text()
        assert recovered < 30, chaos.processes.logs_text()
        chaos.nothing_lost()
        keys = {key.decode() for key in replica.client().keys("gco:us-east-1:*")}
        assert "gco:us-east-1:redbeat:lock" in keys, keys  # beat leads on the new primary
        chaos.processes.stop_all()
