"""README: the two commands come first, and the reference parts agree with the code and manifests.

The configuration table must list every setting of gco_tasks/core/config.py with its real default, and the
"running a real region" part must name the Secrets and Role the manifests actually use.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gco_tasks.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_quickstart_is_first_with_the_two_commands() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[0] == "Quickstart"
    block = re.search(r"```bash\n(.*?)```", _section("Quickstart"), re.S)
    assert block
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make sandbox", "make test"]
    for needed in ("Running a real region", "Configuration reference", "Operations"):
        assert needed in headings


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
    assert variable in rows, f"{variable} is missing from the README's configuration reference"
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


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_section_names_a_heading() -> None:
    """A section lost in a merge leaves links pointing nowhere (it happened to "Region states")."""
    anchors = {_anchor(heading) for heading in re.findall(r"^#+ (.+)$", README, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert len(links) >= 10, links
    assert sorted(links - anchors) == []
