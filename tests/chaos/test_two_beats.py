"""Two beats, one killed: RedBeat's lock in Redis lets one beat send; when it is killed with ``kill -9``
the other takes the lock once it expires (``BEAT_LOCK_TIMEOUT_SECONDS``) and sends from then on.

What must hold: at every moment at most one beat sends (never two fan-outs in one interval: consecutive
sends, from either beat, are at least most of an interval apart), the standby takes over within the
lock's timeout plus one beat loop (in production 40 + 10 s: within a minute), and nothing is lost.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime

from tests.clusters import Cluster
from tests.support.bounds import generous

from .conftest import Chaos
from .harness import wait_until

INTERVAL = 2.0
LOCK_TIMEOUT = 4.0  # BEAT_LOCK_TIMEOUT_SECONDS of the chaos settings
LOOP = 1.0  # HEARTBEAT_INTERVAL_SECONDS = beat_max_loop_interval
SENT = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): INFO/MainProcess\] Scheduler: Sending due task fan-out", re.M)


def sends(chaos: Chaos, *beats: str) -> list[tuple[float, str]]:
    """Every fan-out any of ``beats`` sent: (time, beat), in time order."""
    found = []
    for beat in beats:
        for match in SENT.finditer(chaos.processes.log(beat, tail=1_000_000)):
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((at, beat))
    return sorted(found)


def leader(chaos: Chaos) -> str | None:
    leaders = [b for b in ("beat1", "beat2") if chaos.processes.logged(b, "beat: Acquired lock")]
    return leaders[0] if len(leaders) == 1 else None


def test_two_beats_one_killed(cluster: Cluster, chaos: Chaos) -> None:
    chaos.deploy("alpha")
    chaos.break_record("broken")  # the one record allowed to end in error (with its reason)
    chaos.processes.worker("worker", concurrency=2)
    chaos.processes.beat("beat1")
    chaos.processes.beat("beat2")
    wait_until(lambda: len(sends(chaos, "beat1", "beat2")) >= 3, 60, "three fan-outs")
    first = leader(chaos)
    assert first is not None, "exactly one beat took the lock"
    standby = "beat2" if first == "beat1" else "beat1"

    chaos.processes.kill(first)
    killed = time.time()
    took_over = wait_until(lambda: chaos.processes.logged(standby, "beat: Acquired lock"), 30, "the standby")
    wait_until(lambda: any(at > killed for at, _ in sends(chaos, standby)), 30, "a fan-out from the standby")
    failover = min(at for at, _ in sends(chaos, standby) if at > killed) - killed
    claim = LOCK_TIMEOUT + LOOP  # the lock expires, the standby's next loop takes it (bench/recovery.py)
    chaos.record("two beats, leader kill -9 -> standby sends (lock timeout 4 s, loop 1 s)", failover, claim)
    assert took_over <= generous(claim), chaos.processes.logs_text()

    chaos.deploy("beta")
    wait_until(lambda: chaos.converged("alpha", "beta"), 60, "beta running after the failover")
    timeline = sends(chaos, "beat1", "beat2")
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(timeline)]
    assert min(gaps) >= INTERVAL * 0.75, f"two fan-outs in one interval: {timeline}"
    assert {beat for at, beat in timeline if at < killed} == {first}
    assert {beat for at, beat in timeline if at > killed} == {standby}
    chaos.nothing_lost()
