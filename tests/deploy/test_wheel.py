"""The production wheel holds the product only: ``gco_tasks``, not the sandbox, not the tests.

It is built here the way the image builds it (``pip install .`` builds this same wheel), from a copy of
the source tree that still contains ``gco_sandbox/``, ``tests/`` and ``bench/``, so what keeps them out
is the packaging configuration, not the Docker build context.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for name in ("gco_tasks", "gco_sandbox", "tests", "bench"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(out), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("gco_tasks-*.whl")
    return wheel


def test_the_production_wheel_holds_gco_tasks_only(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        entry_points = next(
            archive.read(name).decode() for name in files if name.endswith(".dist-info/entry_points.txt")
        )
    tops = {name.split("/")[0] for name in files}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"gco_tasks"}, sorted(tops)
    assert not [name for name in files if "gco_sandbox" in name or name.startswith(("tests/", "bench/"))]
    for module in (
        "flows/reconciler.py",
        "worker/app.py",
        "worker/tasks.py",
        "core/rendering/render.py",
        "cli/main.py",
    ):
        assert f"gco_tasks/{module}" in files, module
    assert "gco-tasks = gco_tasks.cli.main:main" in entry_points
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files), "the wheel carries LICENSE"
    assert "gco_tasks.cli" not in entry_points.replace("gco_tasks.cli.main", ""), "no sandbox plugin"
