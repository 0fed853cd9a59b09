"""k8s/pin-image.sh: the documented way to pin an image by digest. No registry is reachable here, so a
stand-in `crane` (or `skopeo`) on PATH answers for the registry; the script's own logic runs for real:
it prints IMAGE:TAG@sha256:..., rewrites a copy of an overlay that `kubectl kustomize` then renders with
the new digest, and refuses anything that is not a sha256 digest."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from .test_k8s_manifests import _kubectl

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "k8s" / "pin-image.sh"
DIGEST = "sha256:" + "5e" * 32
ECR = "111122223333.dkr.ecr.us-east-1.amazonaws.com/gco-tasks"


def _tool(directory: Path, name: str, output: str, code: int = 0) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{directory}/calls'\necho '{output}'\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script with PATH = the stand-ins plus only the utilities it uses (never a real crane, skopeo
    or docker that the machine may have)."""
    utilities = bin_dir / "utilities"
    utilities.mkdir(exist_ok=True)
    for name in ("grep", "sed", "mv", "rm"):
        found = shutil.which(name)
        assert found, name
        if not (utilities / name).exists():
            (utilities / name).symlink_to(found)
    path = f"{bin_dir}{os.pathsep}{utilities}"
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args], env={"PATH": path}, capture_output=True, text=True, timeout=30
    )


def test_print_resolves_the_tag_with_crane(tmp_path: Path) -> None:
    _tool(tmp_path, "crane", DIGEST)
    result = _run(tmp_path, "--print", "public.ecr.aws/aws-cli/aws-cli:2.22.35")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"public.ecr.aws/aws-cli/aws-cli:2.22.35@{DIGEST}"
    assert (tmp_path / "calls").read_text().strip() == "digest public.ecr.aws/aws-cli/aws-cli:2.22.35"


def test_skopeo_is_used_when_crane_is_missing(tmp_path: Path) -> None:
    _tool(tmp_path, "skopeo", DIGEST)
    result = _run(tmp_path, "--print", "nginx:1.27")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"nginx:1.27@{DIGEST}"
    assert "manifest-digest" in (tmp_path / "calls").read_text()


def test_an_overlay_is_rewritten_and_renders_the_new_digest(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "crane", DIGEST)
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "us-east-1"
    result = _run(bin_dir, str(overlay), f"{ECR}:0.2.0")
    assert result.returncode == 0, result.stderr
    (image,) = yaml.safe_load((overlay / "kustomization.yaml").read_text())["images"]
    assert image == {"name": "gco-tasks", "newName": ECR, "digest": DIGEST}
    assert f"digest: {DIGEST}  # 0.2.0" in (overlay / "kustomization.yaml").read_text()
    rendered = subprocess.run([_kubectl(), "kustomize", str(overlay)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    images = {line.split("image:")[1].strip() for line in rendered.stdout.splitlines() if "image:" in line}
    assert images == {f"{ECR}@{DIGEST}"}


@pytest.mark.parametrize("answer", ["sha256:abc", "latest", "", "sha256:" + "G" * 64])
def test_anything_but_a_sha256_digest_is_refused(tmp_path: Path, answer: str) -> None:
    _tool(tmp_path, "crane", answer)
    result = _run(tmp_path, "--print", "nginx:1.27")
    assert result.returncode == 1 and result.stdout == ""
    assert "did not resolve to a sha256 digest" in result.stderr


def test_a_failing_tool_or_no_tool_is_an_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "--print", "nginx:1.27")
    assert result.returncode == 1 and "install crane, skopeo or docker" in result.stderr
    _tool(tmp_path, "crane", "UNAUTHORIZED", code=1)
    result = _run(tmp_path, "--print", "nginx:1.27")
    assert result.returncode == 1 and "could not resolve nginx:1.27" in result.stderr


@pytest.mark.parametrize(
    "args", [("--print",), ("--print", "nginx"), ("--print", f"nginx:1@{DIGEST}"), ("/nowhere", "nginx:1")]
)
def test_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    _tool(tmp_path, "crane", DIGEST)
    assert _run(tmp_path, *args).returncode == 2
