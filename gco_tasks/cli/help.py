"""What ``gco-tasks ... --help`` looks like: classic metavars instead of typer's type labels.

Where it stands in the flow: around the CLI, at the top. More in docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from typer.core import TyperGroup

_TIDY_MARK = "_gco_tidy_help"
_LABELS: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}


class TidyGroup(TyperGroup):
    """A typer group whose commands (and sub-groups, recursively) show classic metavars in help."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            tidy_param(param)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_command(command, ctx)
        return command


def tidy_command(command: Any, ctx: Any) -> None:
    """Tidy a command's parameters (its help option included) and, for a group, every sub-command."""
    if getattr(command, _TIDY_MARK, False):
        return
    setattr(command, _TIDY_MARK, True)
    for param in [*getattr(command, "params", []), command.get_help_option(ctx)]:
        if param is not None:
            tidy_param(param)
    for sub in getattr(command, "commands", {}).values():
        tidy_command(sub, ctx)


def tidy_param(param: Any) -> None:
    """Set a classic metavar on one option or argument (unless it has one); idempotent."""
    if getattr(param, _TIDY_MARK, False):
        return
    setattr(param, _TIDY_MARK, True)
    if getattr(param, "param_type_name", "") == "argument":
        _tidy_argument(param)
    elif param.metavar is None:
        param.metavar = "" if getattr(param, "is_flag", False) else _label(param)


def _tidy_argument(param: Any) -> None:
    name = param.metavar or str(param.name).upper()
    param.metavar = name
    shown = name if param.required else f"[{name}]"
    shown += "..." if param.nargs != 1 else ""
    # typer writes a required argument as {name} in the usage line and labels its type (<str>) in the
    # arguments panel; a plain NAME is what readers expect, in both places.
    param.get_usage_pieces = lambda ctx: [shown]
    param.display_type_rich = lambda ctx: None


def _label(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) if getattr(descriptor, "is_choice", False) else None
    if choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in choices)
    annotation = getattr(descriptor, "annotation", str)
    if get_origin(annotation) is list:
        annotation = (get_args(annotation) or (str,))[0]
    return _LABELS.get(annotation, "VALUE")
