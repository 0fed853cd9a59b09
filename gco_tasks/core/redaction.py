"""Redaction: what the CLI prints of a record or of rendered objects, with environment values hidden.

Where it stands in the flow: at the very end of every CLI command that prints a spec (``endpoints list
--json``, ``endpoints status``, ``endpoints repair``, ``render``). More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

REDACTED: Final = "***"


def redact_env(env: Any) -> Any:
    """An env map with every value replaced by ``***``; an env that is not a map (a malformed record's
    list of ``K=V`` strings, say) is replaced whole, since it may hold values too."""
    if env is None:
        return None
    if not isinstance(env, Mapping):
        return REDACTED
    return {key: REDACTED for key in env}


def redact_spec(spec: Any) -> Any:
    """A spec map with ``env`` (and ``canary.env``, should a record carry one) redacted."""
    if not isinstance(spec, Mapping):
        return spec
    out = dict(spec)
    if "env" in out:
        out["env"] = redact_env(out["env"])
    canary = out.get("canary")
    if isinstance(canary, Mapping) and "env" in canary:
        out["canary"] = {**canary, "env": redact_env(canary["env"])}
    return out


def redact_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A table item with its spec's environment values redacted."""
    out = dict(item)
    if "spec" in out:
        out["spec"] = redact_spec(out["spec"])
    return out


def redact_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rendered Kubernetes objects with every container's (and init container's) literal env ``value``
    replaced by ``***``; ``valueFrom`` references are kept (they name a Secret, not its content)."""
    return [_redact_object(obj) for obj in objects]


def _redact_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(obj)
    spec = out.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    pod = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(pod, Mapping) or not isinstance(spec, Mapping) or not isinstance(template, Mapping):
        return out
    redacted_pod = dict(pod)
    for key in ("containers", "initContainers"):
        if isinstance(pod.get(key), list):
            redacted_pod[key] = [_redact_container(c) for c in pod[key]]
    out["spec"] = {**spec, "template": {**template, "spec": redacted_pod}}
    return out


def _redact_container(container: Any) -> Any:
    if not isinstance(container, Mapping) or not isinstance(container.get("env"), list):
        return container
    env = [
        {**entry, "value": REDACTED} if isinstance(entry, Mapping) and "value" in entry else entry
        for entry in container["env"]
    ]
    return {**container, "env": env}
