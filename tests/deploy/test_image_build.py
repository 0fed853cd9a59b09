"""Dockerfile, .dockerignore and requirements.lock: the image is built from pinned, hash-checked
dependencies, runs as uid 10001 and starts Celery in exec form.

Docker's engine is not available here: the Dockerfile is parsed instruction by instruction.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

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


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_base_is_slim_python_3_11() -> None:
    args = dict(rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest)
    bases = [rest.split()[0] for keyword, rest in _instructions() if keyword == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*(@sha256:\w{64})?", image), image


def test_dependencies_come_from_the_lock_then_the_package_without_deps() -> None:
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN" and "pip install" in rest]
    assert len(runs) == 2
    from_lock, package = runs
    assert "--require-hashes" in from_lock and "-r requirements.lock" in from_lock
    assert "--no-deps" in package and re.search(r"pip install --no-deps \.(\s|$)", package)
    copies = [rest for keyword, rest in _instructions() if keyword == "COPY"]
    lock_copy = next(i for i, rest in enumerate(copies) if rest.startswith("requirements.lock"))
    code_copy = next(i for i, rest in enumerate(copies) if rest.startswith("gco_tasks"))
    assert lock_copy < code_copy, "dependency layer is cached across code changes"


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
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")], "no re-includes: keep the rules simple"

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
            for pattern in patterns
            for prefix in prefixes
        )

    sources = [
        source
        for keyword, rest in _instructions()
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is copied but .dockerignore drops it"
    unwanted_paths = (".venv", ".git", "tests", ".sandbox", "gco_tasks/__pycache__", "local.env")
    for unwanted in (*unwanted_paths, "gco_sandbox"):
        assert ignored(unwanted), unwanted


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = _lock()
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"
    for requirement in _runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is missing from requirements.lock (regenerate it)"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {name}=={version}, pyproject.toml wants {requirement}: regenerate it"
        )
    assert {"kombu", "billiard"} <= set(lock), "celery's own dependencies are locked too"
    for dev_only in ("pytest", "moto", "ruff", "mypy", "honcho"):
        assert dev_only not in lock, f"{dev_only} must not ship in the image"
    header = (REPO / "requirements.lock").read_text().splitlines()[:3]
    assert any("pip compile pyproject.toml" in line and "--generate-hashes" in line for line in header)
