"""The kinds the sandbox API server serves and the discovery documents that describe them. Pure data.

Where it stands in the flow: beside the cluster gateway. The official client (typed APIs and
``kubernetes.dynamic.DynamicClient``) finds resources by these URLs and discovery documents; the sandbox
API server is a LOCAL STAND-IN, not Kubernetes, and serves only the kinds below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: The Kubernetes version the sandbox claims to be (``/version``) unless told otherwise.
DEFAULT_VERSION = "1.30.0"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    name_rule: str  # "subdomain", "label" (RFC 1123) or "label1035"
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    #: The store's collection; the plural unless two groups serve the same plural (core and
    #: events.k8s.io Events: one object seen two ways in Kubernetes, two collections here).
    collection: str = ""

    @property
    def store_key(self) -> str:
        return self.collection or self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def name_error(self, name: str) -> str | None:
        """Why ``name`` is not a valid name for this kind, in Kubernetes' words, or None."""
        if self.name_rule == "label1035":
            limit, pattern, what = 63, _DNS1035_LABEL, "a DNS-1035 label"
            rule = "consist of lower case alphanumeric characters or '-', start with an alphabetic character"
        elif self.name_rule == "label":
            limit, pattern, what = 63, _DNS1123_LABEL, "a lowercase RFC 1123 label"
            rule = (
                "consist of lower case alphanumeric characters or '-', start with an alphanumeric character"
            )
        else:
            limit, pattern, what = 253, _DNS1123_SUBDOMAIN, "a lowercase RFC 1123 subdomain"
            rule = "consist of lower case alphanumeric characters, '-' or '.', start with an alphanumeric"
            rule += " character"
        if len(name) > limit:
            return f"must be no more than {limit} characters"
        if not pattern.match(name):
            return f"{what} must {rule}, and end with an alphanumeric character"
        return None


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, "label", ("status",), ("ns",)),
    ResourceType("", "v1", "services", "service", "Service", True, "label1035", ("status",), ("svc",)),
    ResourceType("", "v1", "events", "event", "Event", True, "subdomain", (), ("ev",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        True,
        "subdomain",
        ("status", "scale"),
        ("deploy",),
    ),
    ResourceType(
        "networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", True, "subdomain", ("status",), ("ing",)
    ),
    ResourceType(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        True,
        "subdomain",
        ("status",),
        ("hpa",),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, "subdomain"),
    # Served, but nothing creates them here (no controllers): the fleet reads them only to explain an
    # unfinished rollout, and finds none.
    ResourceType(
        "apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, "subdomain", ("status",), ("rs",)
    ),
    ResourceType("", "v1", "pods", "pod", "Pod", True, "subdomain", ("status",), ("po",)),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        "subdomain",
        collection="events.events.k8s.io",
    ),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
NAMESPACES = BY_PATH[("", "v1", "namespaces")]

_VERBS = ["create", "delete", "get", "list", "patch", "update"]


def _resource_entry(resource: ResourceType) -> dict[str, Any]:
    return {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": _VERBS if resource.plural != "namespaces" else ["create", "delete", "get", "list", "patch"],
        "shortNames": list(resource.short_names),
    }


def _subresource_entry(resource: ResourceType, sub: str) -> dict[str, Any]:
    kind = "Scale" if sub == "scale" else resource.kind
    entry: dict[str, Any] = {
        "name": f"{resource.plural}/{sub}",
        "singularName": "",
        "namespaced": resource.namespaced,
        "kind": kind,
        "verbs": ["get", "patch", "update"],
    }
    if sub == "scale":
        entry.update(group="autoscaling", version="v1")
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group-version, or None if the sandbox does not serve it."""
    members = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not members:
        return None
    entries: list[dict[str, Any]] = []
    for resource in members:
        entries.append(_resource_entry(resource))
        entries.extend(_subresource_entry(resource, sub) for sub in resource.subresources)
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def api_group_list() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for resource in RESOURCES:
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    items = []
    for name, versions in groups.items():
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        items.append({"name": name, "versions": listed, "preferredVersion": listed[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def api_group(name: str) -> dict[str, Any] | None:
    return next((g for g in api_group_list()["groups"] if g["name"] == name), None)


def version_info(version: str) -> dict[str, str]:
    major, minor, *_ = version.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{version}-sandbox",
        "gitCommit": "sandbox",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "none",
        "platform": "sandbox/local",
    }
