"""Label and field selectors for the sandbox API server's LIST: parsing and matching, no I/O.

Where it stands in the flow: the fleet observes the cluster with a few label-selected LISTs per cycle
(``app=..., gco.io/type=inference``); the sandbox API server (a LOCAL STAND-IN, not Kubernetes) answers
them with this module, following Kubernetes' selector grammar: ``=``, ``==``, ``!=``, ``in``, ``notin``,
exists and ``!`` exists for labels; ``metadata.name`` / ``metadata.namespace`` for fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_SET_OP = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_EQ_OP = re.compile(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$")


class SelectorError(ValueError):
    """The selector string does not parse; the API server answers 400 BadRequest with this message."""


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector, e.g. ``tier in (a,b)``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label too, as in Kubernetes.
        return not present or labels[self.key] not in self.values


def split_clauses(selector: str) -> list[str]:
    """Split on commas that are not inside ``( ... )``."""
    clauses: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            clauses.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector {selector!r}")
    clauses.append("".join(current).strip())
    return [clause for clause in clauses if clause]


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r}")
    return value


def parse_requirement(clause: str) -> Requirement:
    set_match = _SET_OP.match(clause)
    if set_match:
        key, op, raw = set_match.groups()
        values = frozenset(_check_value(v.strip()) for v in raw.split(","))
        return Requirement(_check_key(key), op, values)
    eq_match = _EQ_OP.match(clause)
    if eq_match:
        key, op, value = eq_match.groups()
        return Requirement(_check_key(key), "!=" if op == "!=" else "=", frozenset({_check_value(value)}))
    if clause.startswith("!"):
        return Requirement(_check_key(clause[1:].strip()), "!exists")
    return Requirement(_check_key(clause), "exists")


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse ``app=x,tier in (a,b),!legacy``; an empty or missing selector selects everything."""
    return tuple(parse_requirement(clause) for clause in split_clauses(selector or ""))


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(requirement.matches(labels) for requirement in requirements)


_FIELDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": lambda obj: str(obj.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda obj: str(obj.get("metadata", {}).get("namespace", "")),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (_FIELDS[self.field](obj) == self.value) == self.equal


def parse_field_selector(selector: str | None) -> tuple[FieldRequirement, ...]:
    """Parse ``metadata.name=x`` (also ``==`` and ``!=``); other fields are refused as Kubernetes does
    for fields a resource does not index."""
    requirements = []
    for clause in split_clauses(selector or ""):
        match = _EQ_OP.match(clause)
        if not match:
            raise SelectorError(f"invalid field selector {clause!r}")
        field, op, value = match.groups()
        if field not in _FIELDS:
            raise SelectorError(f'field label not supported: "{field}"')
        requirements.append(FieldRequirement(field, op != "!=", value))
    return tuple(requirements)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)
