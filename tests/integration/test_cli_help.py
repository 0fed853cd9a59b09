"""`gco-tasks --help` everywhere, as a user reads it: classic metavars (no ``<bool>``/``<str>`` type
labels, no ``{name}`` in usage lines), the prompts' ``-y`` documented, and ``--version``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from gco_tasks import __version__
from gco_tasks.cli import app

GCO_TASKS = str(Path(sys.executable).with_name("gco-tasks"))


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from command_paths(sub, (*prefix, name))


PATHS = list(command_paths(typer.main.get_command(app)))


def test_every_command_is_covered() -> None:
    assert ("endpoints", "repair") in PATHS and ("sandbox", "apiserver") in PATHS and ("render",) in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "gco-tasks")
def test_help_has_no_type_labels_or_braces(path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert not re.search(r"<(bool|str|int|float|path|file|list\[[a-z]+\]|[a-z|]+)>", result.output), (
        result.output
    )
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


@pytest.mark.parametrize("verb", ["stop", "delete"])
def test_prompting_verbs_document_yes(verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = CliRunner().invoke(app, ["endpoints", verb, "--help"]).output
    assert "unless -y" in out and "--yes" in out and "-y" in out


def test_version_as_a_user_types_it() -> None:
    result = subprocess.run([GCO_TASKS, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gco-tasks {__version__}\n"
