"""Routing of the sandbox API server (a LOCAL STAND-IN, not Kubernetes): which resource a path names,
the discovery documents, request bodies and query flags."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from gco_sandbox import resources
from gco_sandbox.objects import WriteOptions, bad_request
from gco_sandbox.resources import BY_PATH, ResourceType

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


# --- routing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    resource: ResourceType
    namespace: str  # "" for cluster-scoped kinds or a list across namespaces
    name: str | None = None
    subresource: str = ""

    @property
    def label(self) -> str:
        return f"{self.resource.plural}/{self.subresource}" if self.subresource else self.resource.plural


def route(path: str) -> Route | None:
    """``/api/v1/namespaces/ns/services/x`` -> Route(services, "ns", "x"); None when not a resource path."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = BY_PATH.get((group, version, rest[0]))
    if resource is None:
        return None
    if resource.namespaced and len(rest) > 1 and not namespace:
        return None
    subresource = rest[2] if len(rest) == 3 else ""
    if subresource and subresource not in resource.subresources:
        return None
    return Route(resource, namespace, rest[1] if len(rest) >= 2 else None, subresource)


def discovery(path: str, version: str) -> Any:
    """The discovery document at ``path``, or None."""
    parts = [part for part in path.split("/") if part]
    if parts == ["version"]:
        return resources.version_info(version)
    if parts == ["api"]:
        return resources.api_versions()
    if parts == ["apis"]:
        return resources.api_group_list()
    if parts == ["api", "v1"]:
        return resources.resource_list("", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        group = resources.api_group(parts[1])
        return {"kind": "APIGroup", "apiVersion": "v1", **group} if group else None
    if len(parts) == 3 and parts[0] == "apis":
        return resources.resource_list(parts[1], parts[2])
    return None


#: A UTF-16 surrogate escape (``\ud83d``) not itself behind a backslash: valid JSON, not YAML.
_SURROGATE_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def decode_body(raw: bytes, content_type: str) -> Any:
    """JSON, or YAML for ``*yaml`` content types (the client sends JSON even for apply-patch+yaml). A YAML
    body is refused, as kube-apiserver refuses it, when it escapes UTF-16 surrogates (``\ud83d\ude00``,
    which is how Python's ``json.dumps`` writes characters beyond the BMP): YAML has no such escape."""
    if not raw:
        return None
    if "yaml" in content_type and _SURROGATE_ESCAPE.search(raw):
        raise bad_request(
            "error decoding YAML: error converting YAML to JSON: "
            "yaml: found invalid Unicode character escape code"
        )
    try:
        return json.loads(raw)
    except ValueError:
        if "yaml" not in content_type:
            raise bad_request("the request body is not valid JSON") from None
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise bad_request(f"the request body is not valid YAML: {exc}") from None


def verb_of(method: str, route: Route, patch_type: str | None) -> str:
    if method == "GET":
        return "get" if route.name else "list"
    if method == "PATCH":
        return "apply" if patch_type == "apply" else "patch"
    return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())


def flag(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def write_options(query: dict[str, list[str]], agent: str) -> WriteOptions:
    """Who writes and how (``fieldManager``, ``dryRun``, ``force``), from the query and the User-Agent."""
    return WriteOptions(
        manager=flag(query, "fieldManager") or agent.split("/")[0] or "unknown",
        dry_run=flag(query, "dryRun") == "All",
        force=flag(query, "force") == "true",
        manager_given=bool(flag(query, "fieldManager")),
    )
