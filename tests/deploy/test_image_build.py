"""Dockerfile, .dockerignore and requirements.lock: the image is built from pinned, hash-checked
dependencies, carries no test, benchmark or sandbox code, runs as uid 10001 and starts Celery in exec form.

Docker's engine is not available here: the Dockerfile is parsed instruction by instruction, and the files
the build context would hand to its COPY instructions are copied and run (the fleet's app, the Flower
guard and the CLI import and answer without the sandbox).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]

Instruction = tuple[str, str]


def _instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    result = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _final_stage() -> list[Instruction]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    text = (REPO / "requirements.lock").read_text()
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if block.startswith("#") or not block.strip():
            continue
        first = block.splitlines()[0]
        match = re.match(r"([A-Za-z0-9_.\-]+)==([\w.+!-]+) \\$", first)
        assert match, f"not pinned: {first!r}"
        entries[canonicalize_name(match.group(1))] = (
            match.group(2),
            re.findall(r"--hash=sha256:\w{64}", block),
        )
    return entries


def _dockerignore() -> list[str]:
    return [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _ignored(path: str) -> bool:
    """Whether .dockerignore drops ``path`` (or a directory above it) from the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
        for pattern in _dockerignore()
        for prefix in prefixes
    )


def _copied_sources() -> list[str]:
    return [
        source
        for keyword, rest in _instructions()
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]


def test_base_is_slim_python_3_11() -> None:
    args = dict(rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest)
    bases = [rest.split()[0] for keyword, rest in _instructions() if keyword == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*(@sha256:\w{64})?", image), image


def test_dependencies_come_from_the_lock_then_the_package_without_deps() -> None:
    runs = [
        rest
        for keyword, rest in _instructions()
        if keyword == "RUN" and re.search(r"pip (install|wheel)", rest)
    ]
    assert len(runs) == 3, runs
    build_tools, from_lock, package = runs
    assert "--require-hashes" in build_tools and "-r requirements-build.lock" in build_tools
    assert "/opt/build-tools/bin/pip install" in build_tools, "the build backend stays out of /opt/venv"
    assert "--require-hashes" in from_lock and "-r requirements.lock" in from_lock
    assert re.search(r"^pip install --require-hashes --no-deps -r requirements\.lock$", from_lock)
    wheel, install = (part.strip() for part in package.split(" && ")[:2])
    assert wheel.startswith("/opt/build-tools/bin/pip wheel --no-deps --no-build-isolation ")
    assert re.fullmatch(r"pip install --no-deps /tmp/wheels/gco_tasks-\*\.whl", install)
    copies = [rest for keyword, rest in _instructions() if keyword == "COPY"]
    lock_copy = next(i for i, rest in enumerate(copies) if rest.startswith("requirements.lock"))
    code_copy = next(i for i, rest in enumerate(copies) if rest.startswith("gco_tasks"))
    assert lock_copy < code_copy, "dependency layer is cached across code changes"


def test_the_build_backend_is_locked_with_hashes_and_satisfies_pyproject() -> None:
    """No unpinned setuptools is fetched at build time: the wheel is built without isolation by the
    setuptools of requirements-build.lock, which must satisfy [build-system] requires."""
    text = (REPO / "requirements-build.lock").read_text()
    (pin,) = re.findall(r"^([A-Za-z0-9_.-]+)==([\w.]+) \\$", text, re.M)
    assert pin[0] == "setuptools"
    assert re.search(r"--hash=sha256:[0-9a-f]{64}", text)
    (requires,) = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert Requirement(requires).specifier.contains(pin[1]), (
        f"setuptools {pin[1]} does not satisfy {requires}"
    )
    assert int(pin[1].split(".")[0]) >= 77, "pyproject's SPDX license string needs setuptools 77+"


def test_runtime_stage_runs_as_uid_10001() -> None:
    final = _final_stage()
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] == "10001:10001", "numeric, so runAsNonRoot can verify it"
    user_index = max(i for i, (keyword, _) in enumerate(final) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in final[user_index:]), "nothing runs as root after USER"
    setup = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert "--uid 10001" in setup and "--gid 10001" in setup


def test_default_command_is_exec_form_celery_worker() -> None:
    final = _final_stage()
    assert not [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    (cmd,) = [rest for keyword, rest in final if keyword == "CMD"]
    argv = json.loads(cmd)  # exec form is a JSON array
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    script = argv[2]
    assert script.startswith("exec celery -A gco_tasks worker "), "the shell replaces itself with celery"
    assert '-Q "gco.${REGION:-us-east-1}"' in script


def test_build_context_keeps_what_the_dockerfile_copies_and_drops_the_rest() -> None:
    assert not [p for p in _dockerignore() if p.startswith("!")], "no re-includes: keep the rules simple"
    sources = _copied_sources()
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _ignored(source), f"{source} is copied but .dockerignore drops it"
    for unwanted in (".venv", ".git", "tests", ".sandbox", "gco_tasks/__pycache__", "local.env"):
        assert _ignored(unwanted), unwanted


@pytest.mark.parametrize(
    "path",
    [
        "tests/unit/core/test_config.py",
        "bench/fleet.py",
        "gco_sandbox/__init__.py",
        "gco_sandbox/apiserver.py",
        ".sandbox/pids.json",
        "controlplane/build.sh",
    ],
)
def test_no_test_benchmark_or_sandbox_code_enters_the_build_context(path: str) -> None:
    assert _ignored(path), f"{path} would be in the production image's build context"


def test_runtime_stage_takes_only_the_built_venv() -> None:
    """The final stage copies nothing from the context: only /opt/venv from the build stage, where the
    package was installed from the (filtered) context with --no-deps."""
    copies = [rest for keyword, rest in _final_stage() if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


def _context_copy(into: Path) -> Path:
    """The files the Dockerfile's COPY instructions get from the build context, .dockerignore applied."""
    for source in _copied_sources():
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if not _ignored(relative):
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, into / relative)
    return into


IMAGE_SMOKE = """
import sys
# Only the copied files: drop the editable install's finder, which would find the checkout's modules.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv[1])
import gco_tasks
assert gco_tasks.__file__.startswith(sys.argv[1]), gco_tasks.__file__
from gco_tasks.worker.app import app
import gco_tasks.worker.flower
app.loader.import_default_modules()
assert "gco_tasks.reconcile_endpoint" in app.tasks
from gco_tasks.cli.main import main
sys.argv = ["gco-tasks", "endpoints", "--help"]
try:
    main()
except SystemExit as exc:
    assert exc.code == 0, exc.code
# (The dev venv's editable-install finders are loaded by site.py before this runs: not image code.)
loaded = sorted(
    name for name in sys.modules
    if ("sandbox" in name or name.startswith("tests")) and not name.startswith("__editable__")
)
assert not loaded, loaded
print("image code ok")
"""


def test_the_image_code_runs_the_fleet_and_the_cli_without_the_sandbox(tmp_path: Path) -> None:
    context = _context_copy(tmp_path / "context")
    assert not list(context.rglob("*sandbox*")) and not (context / "tests").exists()
    result = subprocess.run(
        [sys.executable, "-c", IMAGE_SMOKE, str(context)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image code ok" in result.stdout


def test_the_image_lock_holds_the_runtime_only() -> None:
    """What pyproject.toml asks is locked, with hashes: tests/deploy/test_locks.py. Here: the image's lock
    holds celery's own dependencies and nothing of the dev tools or the sandbox."""
    lock = _lock()
    assert {"kombu", "billiard"} <= set(lock), "celery's own dependencies are locked too"
    for dev_only in ("pytest", "moto", "ruff", "mypy", "honcho"):
        assert dev_only not in lock, f"{dev_only} must not ship in the image"
    header = (REPO / "requirements.lock").read_text().splitlines()[:3]
    assert any(
        "pip compile" in line and "pyproject.toml" in line and "--generate-hashes" in line for line in header
    )
