"""Child processes of ``gco-tasks sandbox``: each in its own process group with its log in the state
directory, watched for unexpected exits, and stopped together within a deadline.

Where it stands in the flow: the process edge of the sandbox. ``up.py`` starts redis-server and the
Celery processes through ``Children``; a Ctrl-C in the terminal reaches only the sandbox command (the
children are in their own sessions), which then stops the fleet first and Redis last, so workers shut
down cleanly against a live broker. Stopping is SIGTERM to each process group, then SIGKILL to any group
still alive at the deadline, so prefork pool processes go too. ``pids.json`` in the state directory
lists every process started, for whoever has to check that none is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PIDS_FILE = "pids.json"
LOG_TAIL_CHARS = 3000


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(cannot read {self.log}: {exc})"


class Children:
    """The processes one sandbox started, in start order."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.started: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], die_with_parent: bool = False
    ) -> Child:
        """Start ``argv`` in a new session (its own process group), output to ``<state_dir>/<name>.log``.
        ``die_with_parent``: on Linux the child is killed if this process dies without stopping it."""
        log = self.state_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_kill_me_with_parent if die_with_parent and sys.platform == "linux" else None,
            )
        child = Child(name, process, log)
        self.started.append(child)
        self._write_pids()
        return child

    def first_dead(self) -> Child | None:
        """The first child that has exited (none of them is meant to, until we stop it)."""
        return next((child for child in self.started if child.exit_code() is not None), None)

    def stop(self, names: Iterable[str] | None = None, timeout: float = 6.0) -> list[str]:
        """SIGTERM the process groups of ``names`` (default: all), wait up to ``timeout`` s, SIGKILL the
        rest. Returns the names that had to be killed."""
        wanted = set(names) if names is not None else None
        group = [c for c in self.started if wanted is None or c.name in wanted]
        for child in group:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in group:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        killed = [child.name for child in group if child.exit_code() is None]
        for child in group:
            # Even an exited leader may leave pool processes in its group: make sure the group is gone.
            _signal_group(child.pid, signal.SIGKILL)
        for child in group:
            child.process.wait()
        return killed

    def _write_pids(self) -> None:
        pids = {child.name: child.pid for child in self.started}
        (self.state_dir / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")


def _kill_me_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent (thread) exits (Linux PR_SET_PDEATHSIG)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def group_members(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of live processes in process group ``pgid`` (Linux ``/proc``; empty elsewhere)."""
    members = []
    for entry in proc.glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after "comm)": state, ppid, pgrp ...; zombies are dead already.
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry.name))
    return members
