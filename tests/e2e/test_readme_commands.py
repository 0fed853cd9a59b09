"""Every command in the README and docs/ works as written: the blocks marked ``<!-- runnable ... -->``
are run, in order (the README first, then docs/ in ``tests.deploy.docs.ORDER``), against a sandbox
started as the README says (two regions, default state directory, from a shell whose PATH does not have
the venv: ``source .sandbox/env`` must put it there), each in bash with ``set -euo pipefail``, the
environment carried from one block to the next as in one terminal. Each must exit 0 and print every
``expect="..."`` (or, marked ``expect-fail``, exit non-zero and print that). Every other ``bash`` block
(AWS, EKS) must at least parse (``bash -n``), every ``json`` and ``yaml`` block must load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.docs import Block, all_blocks

from .test_sandbox import Sandbox, kill_leftovers

GCO_TASKS = str(Path(sys.executable).with_name("gco-tasks"))
BLOCK_TIMEOUT = 180


BLOCKS = all_blocks()
RUNNABLE = [block for block in BLOCKS if block.runnable]


def test_the_readme_has_runnable_blocks_and_each_checks_something() -> None:
    assert len(RUNNABLE) >= 8
    assert RUNNABLE[0].file == "README.md", "the README's tour runs first"
    assert "source .sandbox/env" in RUNNABLE[0].code, "the first runnable block starts the second terminal"
    for block in RUNNABLE:
        assert block.lang == "bash", block
        assert block.expect or block.expect_fail, f"{block}: nothing to check"
    assert any(block.expect_fail for block in RUNNABLE)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "bash" and not b.runnable], ids=str)
def test_every_other_bash_block_parses(block: Block) -> None:
    result = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{block}: {result.stderr}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("json", "yaml")], ids=str)
def test_every_json_and_yaml_block_loads(block: Block) -> None:
    loaded = json.loads(block.code) if block.lang == "json" else yaml.safe_load(block.code)
    assert loaded


# --------------------------------------------------------------------------------------------------
# The runnable blocks, against a sandbox
# --------------------------------------------------------------------------------------------------


def terminal_env(home: Path) -> dict[str, str]:
    """A fresh terminal: no venv on PATH, nothing pointing at any service."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "COLUMNS": "120", "TERM": "dumb"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """``gco-tasks sandbox --region us-east-1 --region eu-west-1`` (the README's second form), from a
    checkout-like directory, with its default state directory ``.sandbox``."""
    workdir = tmp_path_factory.mktemp("readme")
    output = workdir / "sandbox.out"
    env = {**terminal_env(workdir), "PATH": os.environ["PATH"]}
    with output.open("wb") as out:
        process = subprocess.Popen(
            [GCO_TASKS, "sandbox", "--region", "us-east-1", "--region", "eu-west-1", "--no-live",
             "--interval", "2"],
            env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Sandbox(process, workdir / ".sandbox", workdir / ".sandbox" / "env", output)
    try:
        running.wait_ready()
        yield running
    finally:
        kill_leftovers(running)


def run_block(
    block: Block, env: dict[str, str], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one block as a terminal would; returns the result and the environment it leaves behind."""
    saved = cwd / ".block-env"
    script = f"set -euo pipefail\n{block.code}env -0 > {saved}\n"
    saved.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )
    if result.returncode != 0 or not saved.exists():
        return result, env
    pairs = (entry.split("=", 1) for entry in saved.read_bytes().decode().split("\0") if "=" in entry)
    return result, {key: value for key, value in pairs if key not in ("_", "SHLVL", "PWD", "OLDPWD")}


@pytest.mark.timeout(1200)  # every block of every doc in one sandbox: 6.6 min measured on a shared machine
def test_runnable_blocks_work_as_written(sandbox: Sandbox) -> None:
    cwd = sandbox.state_dir.parent
    env = terminal_env(cwd)
    for block in RUNNABLE:
        started = time.monotonic()
        result, env = run_block(block, env, cwd)
        seconds = time.monotonic() - started
        shown = f"{block} ({seconds:.1f}s)\n{block.code}--- out\n{result.stdout}--- err\n{result.stderr}"
        output = result.stdout + result.stderr
        if block.expect_fail:
            assert result.returncode != 0, f"expected a failure: {shown}"
            missing = [text for text in block.expect_fail if text not in output]
        else:
            assert result.returncode == 0, shown
            missing = [text for text in block.expect if text not in output]
        assert not missing, f"missing {missing}: {shown}"
        assert "Traceback" not in output, shown
    assert Path(env["PATH"].split(":")[0]) == Path(sys.executable).parent, "the env file put the venv first"
    # a clean exit is what this test asks; how fast the sandbox stops is test_sandbox's (and bench's) figure
    code, _ = sandbox.stop(signal.SIGINT, timeout=60)
    assert code == 0, sandbox.out()
