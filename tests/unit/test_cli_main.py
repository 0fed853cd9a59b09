"""The CLI's plugin groups: the sandbox registers ``gco-tasks sandbox`` through the ``gco_tasks.cli``
entry point; without it the command says how to install it."""

from __future__ import annotations

from importlib.metadata import entry_points

from typer.testing import CliRunner

from gco_tasks.cli.main import PLUGIN_GROUP, SANDBOX_MISSING, build_app


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
