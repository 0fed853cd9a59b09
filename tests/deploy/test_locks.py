"""The locks decide what every venv and image runs: they agree with the pyprojects and with each other.

``make venv`` (and so ``make test`` and ``make sandbox``) installs ``requirements-dev.lock`` with
``--require-hashes --no-deps``; the image installs ``requirements.lock``; its wheel is built by the
setuptools of ``requirements-build.lock``. A dependency added to a pyproject and not locked, a pin that
no longer satisfies its range, two locks that pin one package differently, or a venv that was installed
from something else fails here, with the command that fixes it (``make lock``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
BUILD_LOCK = REPO / "requirements-build.lock"
FIX = "run `make lock` (keeps every pin that still fits) and commit the locks"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def _pins(lock: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _requirements(pyproject: Path, *extras: str) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project.get("optional-dependencies", {})[extra]
    return [Requirement(text) for text in texts]


def _product() -> list[Requirement]:
    return _requirements(REPO / "pyproject.toml")


def _everything() -> list[Requirement]:
    return _requirements(REPO / "pyproject.toml", "dev") + _requirements(REPO / "gco_sandbox/pyproject.toml")


def _extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What ``name[extra]`` adds, read from the installed distribution's metadata (the lock's version)."""
    if not requirement.extras:
        return []
    found: list[Requirement] = []
    for text in metadata.requires(requirement.name) or []:
        needed = Requirement(text)
        for extra in requirement.extras:
            environment = {**default_environment(), "extra": extra}
            if needed.marker is not None and needed.marker.evaluate(environment):
                found.append(needed)
    return found


def _unlocked(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    problems = []
    for requirement in requirements:
        for needed in [requirement, *_extra_requirements(requirement)]:
            pinned = pins.get(canonicalize_name(needed.name))
            if pinned is None:
                problems.append(f"{needed} is not locked")
            elif not needed.specifier.contains(pinned, prereleases=True):
                problems.append(f"{needed} is locked at {pinned}, outside its range")
    return problems


def test_every_product_dependency_is_locked_for_the_image() -> None:
    assert _unlocked(_product(), _pins(RUNTIME_LOCK)) == [], f"requirements.lock is stale: {FIX}"


def test_every_dependency_of_the_venv_is_locked() -> None:
    assert _unlocked(_everything(), _pins(DEV_LOCK)) == [], f"requirements-dev.lock is stale: {FIX}"


def test_the_venv_and_the_image_run_the_same_versions() -> None:
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    differ = {
        name: (str(version), str(dev.get(name)))
        for name, version in runtime.items()
        if dev.get(name) != version
    }
    assert differ == {}, f"requirements.lock and requirements-dev.lock pin these differently: {FIX}"


def test_the_wheel_is_built_by_the_venv_setuptools() -> None:
    build = _pins(BUILD_LOCK)
    assert set(build) == {"setuptools"}
    assert build["setuptools"] == _pins(DEV_LOCK)["setuptools"], FIX


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK], ids=lambda path: path.name)
def test_every_pin_carries_a_hash(lock: Path) -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    pinned = [entry for entry in entries if _PIN.match(entry)]
    assert pinned, f"{lock.name} pins nothing"
    unhashed = [entry.split()[0] for entry in pinned if "--hash=sha256:" not in entry]
    assert unhashed == []


def test_this_venv_was_installed_from_the_dev_lock() -> None:
    """What ``make venv`` installed is the lock, package for package (the editable projects aside)."""
    local = {"gco-tasks", "gco-sandbox"}
    installed = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) not in local
    }
    # pip comes with the venv itself (python -m venv), not from a lock.
    installed.pop("pip", None)
    assert installed == _pins(DEV_LOCK), "the venv differs from requirements-dev.lock: run `make venv`"


def test_make_venv_installs_the_lock_with_hashes_and_nothing_else() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("$(STAMP):") :].split("\n\n", 1)[0]
    assert "--require-hashes --no-deps -r $(DEV_LOCK)" in recipe
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) == 2 and all("--no-deps" in line for line in installs), installs
    assert "--no-build-isolation" in installs[1]


def test_a_missing_pin_is_reported() -> None:
    """The check itself can fail: a dependency added to a pyproject and not locked is named."""
    requirement = Requirement("left-pad-for-python>=1")
    assert _unlocked([requirement], _pins(DEV_LOCK)) == ["left-pad-for-python>=1 is not locked"]
    too_old = Requirement("redis>=99")
    assert _unlocked([too_old], _pins(DEV_LOCK)) == [
        f"redis>=99 is locked at {_pins(DEV_LOCK)['redis']}, outside its range"
    ]


# The control plane's Go lock: controlplane/modules/<component>/{go.mod,go.sum}, built with -mod=readonly.

CONTROLPLANE = REPO / "controlplane"


def _versions() -> dict[str, str]:
    lines = (CONTROLPLANE / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize(
    ("component", "module", "key"),
    [
        ("kubernetes", "k8s.io/kubernetes", "K8S_VERSION"),
        ("etcd", "go.etcd.io/etcd/server/v3", "ETCD_VERSION"),
        ("kwok", "sigs.k8s.io/kwok", "KWOK_VERSION"),
    ],
)
def test_each_component_is_built_from_a_checksummed_module_of_its_pinned_version(
    component: str, module: str, key: str
) -> None:
    folder = CONTROLPLANE / "modules" / component
    version = _versions()[key]
    required = rf"^\s*(require )?{re.escape(module)} {re.escape(version)}( // indirect)?$"
    assert re.search(required, (folder / "go.mod").read_text(), re.M), (
        f"controlplane/modules/{component}/go.mod is not {module} {version} (versions.env): "
        "run `make controlplane-lock` and commit controlplane/modules/"
    )
    sums = (folder / "go.sum").read_text()
    assert re.search(rf"^{re.escape(module)} {re.escape(version)} h1:[A-Za-z0-9+/=]{{44}}$", sums, re.M)
    assert re.search(rf"^{re.escape(module)} {re.escape(version)}/go.mod h1:", sums, re.M)


def test_the_build_resolves_nothing_and_verifies_every_module() -> None:
    build = (CONTROLPLANE / "build.sh").read_text()
    assert 'export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"' in build
    assert "go mod download && go mod verify" in build
    for component in ("kubernetes", "etcd", "kwok"):
        assert f"prepare_module {component} " in build
    assert "go install" not in build and "go get" not in build and "go mod tidy" not in build
