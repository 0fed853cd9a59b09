"""Validation the JSON schemas cannot express, for the sandbox API server (a LOCAL STAND-IN, not
Kubernetes): the checks of kube-apiserver that the fleet's objects can run into. Pure; no I/O.

Where it stands in the flow: after the schema check (``validation.py``) of every write the stand-in
accepts. The conformance tests (``tests/integration/test_conformance.py``) hold these to the real API
server's answers. Covered, in kube-apiserver's words: label keys and values (63 bytes, the character set,
qualified key names) in metadata, selectors, templates and node selectors; annotation keys; a
Deployment's selector matching its template's labels, and being immutable; tolerations (key, value,
``Exists`` without value, ``tolerationSeconds`` only with ``NoExecute``); an HPA's ``minReplicas >= 1``
and ``maxReplicas >= minReplicas``; Ingress ``Prefix``/``Exact`` paths (absolute, no ``//``, ``/./``,
``/../``, ``%2f``, no trailing ``/.`` or ``/..``). Everything else kube-apiserver checks is not modelled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")
_BAD_PATH_ENDS = ("/..", "/.")
_FORMAT = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric"
)
_FORMAT += " character"

Problem = tuple[str, Any, str]  # (field path, value, message)


def semantic_error(obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> str | None:
    """The first problem of ``obj`` as kube-apiserver words it (``path: Invalid value: v: why``), or None."""
    for path, value, message in problems(obj, old):
        shown = json.dumps(value, separators=(",", ":"), sort_keys=True)
        return f"{path}: Invalid value: {shown}: {message}"
    return None


def problems(obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> Iterator[Problem]:
    metadata = obj.get("metadata") or {}
    yield from _labels(metadata.get("labels") or {}, "metadata.labels")
    for key in metadata.get("annotations") or {}:
        yield from _key(key, "metadata.annotations")
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Deployment":
        yield from _deployment(spec, (old or {}).get("spec"))
    elif kind == "HorizontalPodAutoscaler":
        yield from _hpa(spec)
    elif kind == "Ingress":
        yield from _ingress(spec)
    elif kind == "Service":
        yield from _labels(spec.get("selector") or {}, "spec.selector")


def _key(key: str, path: str) -> Iterator[Problem]:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        yield path, key, "prefix part must be a lowercase RFC 1123 subdomain"
    elif len(name) > 63:
        yield path, key, "name part must be no more than 63 bytes"
    elif not _NAME.match(name):
        yield path, key, f"name part {_FORMAT}"


def _value(value: Any, path: str) -> Iterator[Problem]:
    if not isinstance(value, str) or not value:
        return
    if len(value.encode()) > 63:
        yield path, value, "must be no more than 63 bytes"
    elif not _NAME.match(value):
        yield path, value, f"a valid label {_FORMAT}"


def _labels(labels: Mapping[str, Any], path: str) -> Iterator[Problem]:
    for key, value in labels.items():
        yield from _key(key, path)
        yield from _value(value, path)


def _deployment(spec: Mapping[str, Any], old_spec: Mapping[str, Any] | None) -> Iterator[Problem]:
    selector = spec.get("selector") or {}
    match = selector.get("matchLabels") or {}
    yield from _labels(match, "spec.selector.matchLabels")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    yield from _labels(labels, "spec.template.metadata.labels")
    if not match and not selector.get("matchExpressions"):
        yield "spec.selector", selector, "empty selector is invalid for deployment"
    elif any(labels.get(key) != value for key, value in match.items()):
        yield "spec.template.metadata.labels", labels, "`selector` does not match template `labels`"
    if old_spec is not None and old_spec.get("selector") != spec.get("selector"):
        yield "spec.selector", selector, "field is immutable"
    pod = template.get("spec") or {}
    yield from _labels(pod.get("nodeSelector") or {}, "spec.template.spec.nodeSelector")
    for index, toleration in enumerate(pod.get("tolerations") or []):
        yield from _toleration(toleration, f"spec.template.spec.tolerations[{index}]")


def _toleration(toleration: Mapping[str, Any], path: str) -> Iterator[Problem]:
    key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
    if key:
        yield from _key(key, f"{path}.key")
    elif operator != "Exists":
        yield f"{path}.operator", operator, "operator must be Exists when `key` is empty"
    if toleration.get("tolerationSeconds") is not None and toleration.get("effect") != "NoExecute":
        yield (
            f"{path}.effect",
            toleration.get("effect"),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        )
    if operator == "Exists" and toleration.get("value"):
        yield f"{path}.operator", toleration["value"], "value must be empty when `operator` is 'Exists'"
    elif operator == "Equal":
        yield from _value(toleration.get("value"), f"{path}.value")


def _hpa(spec: Mapping[str, Any]) -> Iterator[Problem]:
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if isinstance(low, int) and low < 1:
        yield "spec.minReplicas", low, "must be greater than or equal to 1"
    if isinstance(low, int) and isinstance(high, int) and high < low:
        yield "spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"


def _ingress(spec: Mapping[str, Any]) -> Iterator[Problem]:
    for r, rule in enumerate(spec.get("rules") or []):
        for p, entry in enumerate((rule.get("http") or {}).get("paths") or []):
            if entry.get("pathType") not in ("Prefix", "Exact"):
                continue
            yield from _ingress_path(str(entry.get("path") or ""), f"spec.rules[{r}].http.paths[{p}].path")


def _ingress_path(path: str, where: str) -> Iterator[Problem]:
    if not path.startswith("/"):
        yield where, path, "must be an absolute path"
        return
    for part in _BAD_PATH_PARTS:
        if part in path:
            yield where, path, f"must not contain '{part}'"
            return
    for end in _BAD_PATH_ENDS:
        if path.endswith(end):
            yield where, path, f"cannot end with '{end}'"
            return
