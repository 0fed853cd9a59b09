"""The `gco-tasks` command line (``main``), one module per command group: ``endpoints``, ``render``."""

from __future__ import annotations

from gco_tasks.cli.main import app, main

__all__ = ["app", "main"]
