"""This process's settings and adapters: the only process-wide state of a worker or beat.

Where it stands in the flow: under everything in ``worker``. Settings are read from the environment on
first use (a process starting, not an import); the ``Fleet`` is built on first use, after the prefork,
and reused by every task of the process. Tests and the sandbox replace it (``use_fleet``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gco_tasks.core.config import Settings, load_settings

if TYPE_CHECKING:
    from gco_tasks.worker.fleet import Fleet

_settings: Settings | None = None
_fleet: Fleet | None = None


def current_settings() -> Settings:
    """This process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def use_fleet(fleet: Fleet | None) -> None:
    """Replace this process's adapters (tests and the sandbox point them at their own services)."""
    global _fleet
    _fleet = fleet


def process_fleet() -> Fleet:
    """This process's adapters, built on first use (after the prefork) and reused."""
    global _fleet
    if _fleet is None:
        from gco_tasks.worker.fleet import Fleet  # the adapters' libraries load in workers only

        _fleet = Fleet.from_settings(current_settings())
    return _fleet
