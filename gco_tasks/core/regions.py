"""Region names: which regions exist, and the one sentence that tells a user about a typo.

Where it stands in the flow: at the door, before anything is written. More in docs/architecture.md.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Final

#: The AWS commercial partition's regions (not GovCloud, not China), as of 2025.
AWS_COMMERCIAL_REGIONS: Final[tuple[str, ...]] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
)

_SHAPE: Final = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def known_regions(setting: str) -> tuple[str, ...]:
    """The regions of a ``KNOWN_REGIONS`` value (comma-separated, blanks ignored); the AWS commercial
    regions when it is empty."""
    listed = tuple(dict.fromkeys(part.strip() for part in setting.split(",") if part.strip()))
    return listed or AWS_COMMERCIAL_REGIONS


def shape_problem(region: str) -> str | None:
    """Why ``region`` cannot be a region name at all (it becomes a queue name and a key prefix)."""
    if _SHAPE.fullmatch(region):
        return None
    return f"invalid region {region!r}: use lower-case letters, digits and '-' (e.g. us-east-1)"


def region_problem(region: str, known: Sequence[str], allow_unknown: bool = False) -> str | None:
    """One sentence saying what is wrong with ``region`` and how to fix it; None when it is fine."""
    shape = shape_problem(region)
    if shape is not None or allow_unknown or region in known:
        return shape
    parts = [f"unknown region {region!r}", f"known regions: {', '.join(known)}"]
    guess = closest_region(region, known)
    if guess:
        parts.append(f"did you mean {guess!r}?")
    return "; ".join(parts) + " (add it to KNOWN_REGIONS or pass --allow-unknown-region for a new region)"


def closest_region(region: str, known: Sequence[str], cutoff: float = 0.75) -> str | None:
    """The known region ``region`` is most likely a typo of; on a tie, the one listed first (the list
    puts the busiest regions first: ``us-est-1`` is ``us-east-1`` rather than ``us-west-1``)."""
    scored = [
        (difflib.SequenceMatcher(None, region, name).ratio(), -index, name)
        for index, name in enumerate(known)
    ]
    best = max(scored, default=None)
    return best[2] if best is not None and best[0] >= cutoff else None


def region_problems(regions: Iterable[str], known: Sequence[str], allow_unknown: bool = False) -> list[str]:
    """``region_problem`` for each region given, in order; empty when every one is fine."""
    found = (region_problem(region, known, allow_unknown) for region in regions)
    return [problem for problem in found if problem is not None]


def kubeconfig_variable(region: str) -> str:
    """``KUBECONFIG_EU_WEST_1`` for eu-west-1: where the operator's CLI (and the sandbox's env file) keep
    the kubeconfig of each region, beside ``KUBECONFIG`` for the region in ``REGION``."""
    return "KUBECONFIG_" + region.upper().replace("-", "_")
