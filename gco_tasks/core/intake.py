"""What arrives from the table is untrusted input: the checks that keep one bad record from stalling a region.

Where it stands in the flow: at the edges of the flows. More in docs/architecture.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from gco_tasks.core.conventions import canary_name
from gco_tasks.core.fields import validate_endpoint_name

#: Longest error text written to ``region_status`` (the whole item must stay under DynamoDB's 400 KB).
ERROR_LIMIT: Final = 2000
_DNS_1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot even be looked for in the cluster: it and its canary's name (``{name}-canary``)
    must be Kubernetes object names and label values (DNS-1123 labels of at most 63 characters), or the
    label selector of its objects is refused (400). None when it can; the message is the stricter rule
    of ``fields.validate_endpoint_name``, which says what a valid name is. (A name that passes here but
    not that rule is refused by the record's own validation, which also tears down a deleted one.)"""
    if isinstance(name, str) and all(_label(value) for value in (name, canary_name(name))):
        return None
    try:
        validate_endpoint_name(name)  # type: ignore[arg-type]
    except ValueError as exc:
        reason = str(exc)
    else:  # pragma: no cover - every valid endpoint name is a selectable one
        reason = "must be a DNS-1123 label"
    return f"invalid endpoint {_shown(name)}: endpoint_name: {reason}"


def _label(value: str) -> bool:
    return len(value) <= 63 and _DNS_1123_LABEL.fullmatch(value) is not None


def travels_as_json(item: Mapping[str, Any] | None) -> bool:
    """Whether ``item`` survives a JSON round trip unchanged in kind: no sets, binary or NaN."""
    try:
        json.dumps(item, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def bounded(message: str | None, limit: int = ERROR_LIMIT) -> str | None:
    """``message`` cut to ``limit`` characters, saying how much was left out."""
    if message is None or len(message) <= limit:
        return message
    left_out = len(message) - limit
    return f"{message[:limit]}... ({left_out} more characters)"


def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."
