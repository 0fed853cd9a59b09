"""What every rendered object shares: the render options, the workload (primary or canary) an object
belongs to, and its labels and metadata.

Where it stands in the flow: inside step 2 (render), used by each object kind's module. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gco_tasks.core import conventions as names
from gco_tasks.core.records import EndpointSpec
from gco_tasks.core.rendering.policy import EndpointPolicy

if TYPE_CHECKING:
    from gco_tasks.core.config import Settings

Obj = dict[str, Any]


@dataclass(frozen=True)
class RenderOptions:
    """What rendering takes from the region's configuration rather than from the record."""

    namespace: str = "gco-inference"  # used when the record names none
    model_sync_image: str = "public.ecr.aws/aws-cli/aws-cli:2.22.35"
    service_account: str = "gco-service-account"
    pod_lockdown: bool = True  # INFERENCE_POD_LOCKDOWN: the security fields of ``rendering.lockdown``
    policy: EndpointPolicy = field(default_factory=EndpointPolicy)  # caps, tolerations a record may ask
    #: MODEL_READ_SCOPE: what of the shared model volume an inference container reads ("share": all of
    #: it; "endpoint": its own directory and ``model_shared_dirs``). Always read-only.
    model_read_scope: str = "share"
    model_shared_dirs: tuple[str, ...] = ()  # MODEL_SHARED_DIRS

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderOptions:
        return cls(
            namespace=settings.inference_namespace,
            model_sync_image=settings.model_sync_image,
            service_account=settings.inference_service_account,
            pod_lockdown=settings.inference_pod_lockdown,
            model_read_scope=settings.model_read_scope,
            model_shared_dirs=settings.model_shared_directories,
            policy=EndpointPolicy(
                max_replicas_per_endpoint=settings.max_replicas_per_endpoint,
                max_gpus_per_pod=settings.max_gpus_per_pod,
                max_cpu_per_container=settings.max_cpu_per_container,
                max_memory_per_container=settings.max_memory_per_container,
                allow_wildcard_tolerations=settings.allow_wildcard_tolerations,
                allowed_toleration_keys=settings.allowed_toleration_key_list,
                allowed_image_registries=settings.allowed_image_registry_list,
                max_gpus_per_endpoint=settings.max_gpus_per_endpoint,
                max_cpu_per_endpoint=settings.max_cpu_per_endpoint,
            ),
        )


@dataclass(frozen=True)
class Workload:
    """One Deployment + Service pair: the primary (``{name}``) or the canary (``{name}-canary``)."""

    endpoint: str  # the endpoint's name, shared by primary and canary
    name: str  # object names and the pods' ``app`` label
    image: str
    replicas: int | None  # None: the HPA owns it
    canary: bool
    namespace: str

    @property
    def public_path(self) -> str:
        """Where the ALB sends this endpoint's traffic (the canary's too): the server's root path."""
        return names.public_path(self.endpoint)


def pod_labels(workload: Workload) -> dict[str, str]:
    """The pod template's labels: exactly GCO's (``app``, ``project``, ``gco.io/type``). A label added
    here changes every pod template, so adopting a region from GCO's monitor would restart every pod;
    the fleet's own labels go on the objects' metadata only (``labels``)."""
    return {
        names.APP_LABEL: workload.name,
        names.PROJECT_LABEL: names.PROJECT,
        names.TYPE_LABEL: names.INFERENCE_TYPE,
    }


def labels(workload: Workload) -> dict[str, str]:
    """The objects' labels: GCO's, plus the endpoint, who manages it and, for a canary, the canary mark."""
    labels = {
        **pod_labels(workload),
        names.ENDPOINT_LABEL: workload.endpoint,
        names.MANAGED_BY_LABEL: names.FIELD_MANAGER,
    }
    if workload.canary:
        labels[names.CANARY_LABEL] = "true"
    return labels


def metadata(name: str, workload: Workload, annotations: Mapping[str, str] | None = None) -> Obj:
    return {
        "name": name,
        "namespace": workload.namespace,
        "labels": labels(workload),
        "annotations": dict(annotations or {}),
    }


def autoscaling_enabled(spec: EndpointSpec) -> bool:
    return spec.autoscaling is not None and spec.autoscaling.enabled
