"""Shell completion (typer's): `gco-tasks --show-completion SHELL` prints the script, and the installed
command completes commands, options, `--state` values and regions the way the script asks it to
(``_GCO_TASKS_COMPLETE=complete_bash`` with ``COMP_WORDS``/``COMP_CWORD``, as bash runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GCO_TASKS = str(Path(sys.executable).with_name("gco-tasks"))


def complete(words: str) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    env["_GCO_TASKS_COMPLETE"] = "complete_bash"
    env.pop("KNOWN_REGIONS", None)
    result = subprocess.run([GCO_TASKS], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_show_completion_prints_the_script_for_the_shell_it_runs_in() -> None:
    """typer picks the shell from the process tree (shellingham), as a user's terminal has it: run from
    bash, the script is bash's. Run without a shell above it (a daemon's child), typer cannot tell."""
    result = subprocess.run(
        ["bash", "-c", f"{GCO_TASKS} --show-completion"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F _gco_tasks_completion gco-tasks" in result.stdout


def test_the_command_completes_commands_options_states_and_regions() -> None:
    assert complete("gco-tasks endpoints li") == ["list"]
    assert complete("gco-tasks endpoints rec") == ["reconcile"]
    assert "--state" in complete("gco-tasks endpoints list --st")
    assert complete("gco-tasks endpoints list --state er") == ["error"]
    assert complete("gco-tasks endpoints list -r eu-west-") == ["eu-west-1", "eu-west-2", "eu-west-3"]
    assert complete("gco-tasks endpoints list -o w") == ["wide"]
    assert complete("gco-tasks diff --a") == ["--all"]
