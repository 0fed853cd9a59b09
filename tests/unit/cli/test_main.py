"""The CLI's plugin groups: the sandbox registers ``gco-tasks sandbox`` through the ``gco_tasks.cli``
entry point; without it the command says how to install it. Its log lines follow ``LOG_FORMAT``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from typer.testing import CliRunner

from gco_tasks.cli.main import PLUGIN_GROUP, SANDBOX_MISSING, build_app, configure_logging


def test_without_the_sandbox_its_command_says_how_to_install_it() -> None:
    result = CliRunner().invoke(build_app([]), ["sandbox", "apiserver", "--port", "0"])
    assert result.exit_code == 1
    assert SANDBOX_MISSING in result.output
    assert "pip install -e ./gco_sandbox" in SANDBOX_MISSING


def test_the_installed_sandbox_registers_its_group() -> None:
    plugins = list(entry_points(group=PLUGIN_GROUP))
    assert [plugin.value for plugin in plugins] == ["gco_sandbox.cli:sandbox_app"]
    result = CliRunner().invoke(build_app(plugins), ["sandbox", "--help"])
    assert result.exit_code == 0
    assert "apiserver" in result.output and "not installed" not in result.output


@pytest.fixture()
def root_logging() -> Iterator[None]:
    """The root logger's handlers and level, restored after the test."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers = saved[0]
    root.setLevel(saved[1])


def test_the_cli_logs_in_log_format_with_the_region(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("REGION", "eu-west-1")
    configure_logging()
    logging.getLogger("botocore.credentials").info("not shown: the CLI logs warnings only")
    logging.getLogger("gco_tasks.adapters.store").warning("throttled, retrying")
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert (record["level"], record["message"], record["region"]) == (
        "WARNING",
        "throttled, retrying",
        "eu-west-1",
    )


def test_invalid_settings_leave_readable_text(
    root_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "yaml")  # the command that reads the settings says so
    configure_logging()
    logging.getLogger("gco_tasks.adapters.store").warning("throttled, retrying")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING/MainProcess] gco_tasks.adapters.store: throttled, retrying")
