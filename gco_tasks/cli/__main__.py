"""``python -m gco_tasks.cli``: the same command line as ``gco-tasks``."""

from __future__ import annotations

from gco_tasks.cli.main import main

main()
