"""The sandbox's child-process handling with throwaway shell processes: own process groups, logs, pids.json,
dead-child detection, and stopping a whole group (grandchildren too) with SIGKILL after the grace period."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gco_sandbox.children import PIDS_FILE, Children, group_members

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process groups seen through /proc")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_children_run_in_their_own_groups_and_stop_with_their_grandchildren(tmp_path: Path) -> None:
    children = Children(tmp_path)
    polite = children.start("polite", ["sh", "-c", "echo hello; sleep 30 & sleep 30; wait"], os.environ)
    stubborn = children.start("stubborn", ["sh", "-c", "trap '' TERM; sleep 30 & wait"], os.environ)
    # Each shell has forked its sleeps, so the stubborn one's trap is set before it is signalled.
    wait_for(lambda: len(group_members(polite.pid)) >= 2 and len(group_members(stubborn.pid)) >= 2)
    assert os.getpgid(polite.pid) == polite.pid != os.getpgrp()
    assert json.loads((tmp_path / PIDS_FILE).read_text()) == {"polite": polite.pid, "stubborn": stubborn.pid}
    assert children.first_dead() is None

    started = time.monotonic()
    killed = children.stop(timeout=1.0)
    # Killed at the 1 s deadline, not after the 30 s the stubborn group would live (margin for a busy box).
    assert time.monotonic() - started < 15
    assert killed == ["stubborn"]
    assert group_members(polite.pid) == [] and group_members(stubborn.pid) == []
    assert "hello" in polite.tail()


def test_first_dead_names_the_child_that_exited(tmp_path: Path) -> None:
    children = Children(tmp_path)
    children.start("alive", ["sleep", "30"], os.environ)
    dead = children.start("dies", ["sh", "-c", "echo boom >&2; exit 3"], os.environ)
    dead.process.wait(timeout=5)
    assert children.first_dead() is dead and dead.exit_code() == 3
    assert "boom" in dead.tail()
    children.stop()
    assert all(group_members(child.pid) == [] for child in children.started)


def test_stop_only_the_named_children(tmp_path: Path) -> None:
    children = Children(tmp_path)
    first = children.start("first", ["sleep", "30"], os.environ)
    second = children.start("second", ["sleep", "30"], os.environ)
    children.stop(["first"])
    assert first.exit_code() is not None and second.exit_code() is None
    children.stop()
    assert second.exit_code() is not None
