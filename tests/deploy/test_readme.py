"""README and docs/: the two commands come first, the README stays a newcomer's page that leads to each
guide, the reference parts agree with the code and manifests, and every link lands on a heading.

The configuration table (docs/configuration.md) must list every setting of gco_tasks/core/config.py with its
real default, and the production guide (docs/production.md) must name the Secrets and Role the manifests
actually use.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gco_tasks.core.config import Settings

from .docs import REPO, anchor, doc_files, headings, links, read, section

README = read("README.md")
README_MAX_LINES = 400
GUIDES = {
    "docs/production.md": "Running a real region",
    "docs/operations.md": "Operating a region",
    "docs/security.md": "Security",
    "docs/configuration.md": "Configuration reference",
}


def _section(title: str) -> str:
    return section(title)


def test_quickstart_is_first_with_the_two_commands() -> None:
    assert headings(README)[1] == (2, "Quickstart")
    block = re.search(r"```bash\n(.*?)```", _section("Quickstart"), re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make sandbox", "make test"]


def test_readme_is_a_newcomers_page_that_leads_to_each_guide() -> None:
    """What it is, the two commands, the sandbox tour and the layout stay; the production guide, the
    runbook, the security model and the configuration reference each have a file of their own."""
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference text to docs/"
    titles = [title for _, title in headings(README)]
    for needed in ("Quickstart", "The local sandbox", "What it is", "Layout", "Where to read on"):
        assert needed in titles, needed
    targets = set(links(_section("Where to read on")))
    for path, title in GUIDES.items():
        assert path in targets, f"Where to read on does not link {path}"
        assert headings(read(path))[0] == (1, title), path
    assert "docs/architecture.md" in targets


def _reference_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in _section("Configuration reference").splitlines():
        match = re.match(r"\| `([A-Z0-9_]+)` \| (.+?) \| (.+) \|$", line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_configuration_reference_lists_each_setting_with_its_default(name: str) -> None:
    rows = _reference_rows()
    variable = name.upper()
    assert variable in rows, f"{variable} is missing from docs/configuration.md"
    default = Settings.model_fields[name].default
    shown, meaning = rows[variable]
    assert (f"`{default}`" in shown) if default != "" else ("empty" in shown), f"{variable}: {shown}"
    assert meaning.strip()


def test_configuration_reference_has_no_unknown_settings() -> None:
    known = {name.upper() for name in Settings.model_fields} | {"AWS_ENDPOINT_URL_DYNAMODB", "KUBECONFIG"}
    known |= {"FLOWER_BASIC_AUTH"}
    assert set(_reference_rows()) <= known


def test_real_region_instructions_match_the_manifests() -> None:
    text = _section("Running a real region")
    assert "kubectl apply -k k8s/overlays/us-east-1" in text

    base = REPO / "k8s" / "base"
    refs = set()
    for path in base.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            refs |= set(re.findall(r"'secretKeyRef': \{'name': '([\w-]+)', 'key': '([\w-]+)'\}", str(doc)))
    assert refs == {("gco-tasks-redis", "url"), ("gco-tasks-flower", "basic-auth")}
    for name, key in refs:
        assert re.search(rf"create secret generic {name}\s*\\?\s*--from-literal={key}=", text), name

    for action in ("Scan", "GetItem", "UpdateItem", "DeleteItem"):
        assert f"dynamodb:{action}" in text
    role = next(yaml.safe_load_all((base / "rbac.yaml").read_text()))
    for rule in role["rules"]:
        (resource,) = rule["resources"]
        row = next(line for line in text.splitlines() if f"| `{resource}` |" in line)
        assert row.endswith(f"| {', '.join(rule['verbs'])} |"), row


def _resolve(source: str, target: str) -> tuple[Path, str]:
    path, _, fragment = target.partition("#")
    return ((REPO / source).parent / path).resolve() if path else REPO / source, fragment


def test_every_link_to_a_section_names_a_heading() -> None:
    """A section lost in a merge, or moved to another file, leaves links pointing nowhere (it happened
    to "Region states"): every relative link of README.md and docs/*.md names a file that exists and,
    with a fragment, a heading of that file. docs/architecture.md may not be written yet: a link to it
    is checked once it exists."""
    broken, checked = [], 0
    for source in doc_files():
        for target in links(read(source)):
            if re.match(r"[a-z]+:", target):
                continue
            path, fragment = _resolve(source, target)
            checked += 1
            if path == REPO / "docs" / "architecture.md" and not path.exists():
                continue
            if not path.exists():
                broken.append(f"{source}: {target} (no such file)")
            elif fragment and fragment not in {anchor(title) for _, title in headings(path.read_text())}:
                broken.append(f"{source}: {target} (no such heading)")
    assert checked >= 30, checked
    assert broken == []
