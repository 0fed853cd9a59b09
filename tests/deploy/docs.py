"""The project's documentation as the tests read it: README.md and docs/*.md, their headings (as GitHub
anchors them), sections, links and fenced blocks. The README tests, the runnable-blocks test and every
test that checks a doc against the code read the docs through here, so text can move between files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The order the runnable blocks run in (one sandbox, one terminal): the README's tour first, then the
# guides; a docs/ file not named here runs after them, in name order.
ORDER = (
    "README.md",
    "docs/cli.md",
    "docs/operations.md",
    "docs/production.md",
    "docs/security.md",
    "docs/configuration.md",
    "docs/gco-monitor.md",
    "docs/development.md",
)
MARKER = re.compile(r"^<!-- runnable(?P<attrs>.*?)-->$")
ATTRIBUTE = re.compile(r'(expect|expect-fail)="([^"]*)"')


def doc_files() -> list[str]:
    """Every documentation file, relative to the repository, in running order."""
    present = {str(path.relative_to(REPO)) for path in (REPO / "docs").glob("*.md")} | {"README.md"}
    return [name for name in ORDER if name in present] + sorted(present - set(ORDER))


def read(name: str) -> str:
    return (REPO / name).read_text()


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a bash block is not a heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every heading outside code blocks."""
    return [
        (len(match.group(1)), match.group(2))
        for line in prose_lines(text)
        if (match := re.match(r"^(#+) (.+)$", line))
    ]


def section(title: str, name: str | None = None) -> str:
    """The text under the heading `title` (any level) up to the next heading of its level or above, in
    `name` or, without it, in whichever documentation file has it (exactly one must)."""
    found = []
    for candidate in [name] if name else doc_files():
        level, taken, fenced = 0, [], False
        for line in read(candidate).splitlines():
            if line.startswith("```"):
                fenced = not fenced
            heading = None if fenced else re.match(r"^(#+) (.+)$", line)
            if heading and level and len(heading.group(1)) <= level:
                break
            if level:
                taken.append(line)
            elif heading and heading.group(2) == title:
                level = len(heading.group(1))
        if level:
            found.append("\n".join(taken) + "\n")
    assert len(found) == 1, f"{len(found)} documentation files have a heading {title!r}"
    return found[0]


def links(text: str) -> list[str]:
    """Every Markdown link target outside code blocks."""
    return re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose_lines(text)))


@dataclass
class Block:
    """A fenced block of a documentation file, with its ``<!-- runnable ... -->`` marker if it has one."""

    file: str
    line: int
    lang: str
    code: str
    runnable: bool = False
    expect: list[str] = field(default_factory=list)
    expect_fail: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def blocks(name: str) -> list[Block]:
    found: list[Block] = []
    lines = read(name).splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence or not fence.group(1):
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        block = Block(name, index + 1, fence.group(1), "\n".join(lines[index + 1 : end]) + "\n")
        marker = MARKER.match(lines[index - 1]) if index else None
        if marker:
            block.runnable = True
            for kind, value in ATTRIBUTE.findall(marker.group("attrs")):
                (block.expect if kind == "expect" else block.expect_fail).append(value)
        found.append(block)
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    """Every fenced block of every documentation file, in running order."""
    return [block for name in doc_files() for block in blocks(name)]
