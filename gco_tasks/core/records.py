"""The endpoint record: GCO's DynamoDB item as typed, validated models.

Where it stands in the flow: at the very start of every reconcile. More in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gco_tasks.core.conventions import public_path
from gco_tasks.core.errors import PermanentError
from gco_tasks.core.fields import (
    INT32_MAX,
    EnvName,
    HttpPath,
    Image,
    IngressPath,
    Int,
    Labels,
    LabelValue,
    NonEmptyStr,
    NonNegativeInt,
    Quantity,
    ResourceName,
    Str,
    TolerationKey,
    check_model_source,
    check_namespace,
    from_dynamo,
    integral,
    iso_now,
    no_set,
    parse_timestamp,
    problems,
    to_dynamo,
    validate_endpoint_name,
)

# --------------------------------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------------------------------

DesiredState = Literal["deploying", "running", "stopped", "deleted"]
DEPLOYING: Final = "deploying"
RUNNING: Final = "running"
STOPPED: Final = "stopped"
DELETED: Final = "deleted"

#: Region states: the fleet writes creating, running, updating, stopped, deleting, deleted and error
#: (``deleting``: objects are gone from the plan but still held by finalizers or dependents). GCO's model
#: also defines ``pending`` and ``stopping``; they are accepted when reading so a GCO record never fails.
RegionState = Literal[
    "creating", "running", "updating", "stopped", "deleted", "error", "pending", "stopping", "deleting"
]

Accelerator = Literal["nvidia", "neuron"]
CapacityType = Literal["on-demand", "spot"]
MetricType = Literal["cpu", "memory"]

DEFAULT_NAMESPACE: Final = "gco-inference"

# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class InvalidEndpointError(PermanentError, ValueError):
    """A record (or CLI input) is not a valid endpoint: permanent, retrying the same record cannot help.
    ``problems`` lists ``(field path, message)``; the string names every field and what it accepts."""

    def __init__(self, problems: list[tuple[str, str]], name: str | None = None) -> None:
        self.problems = problems
        self.name = name
        subject = f"endpoint {name!r}" if name else "endpoint record"
        details = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"invalid {subject}: {details}")


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class _ItemModel(BaseModel):
    """Common behaviour: immutable, unknown keys kept, written back the way GCO writes its items."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=False)

    #: Fields GCO always writes, even at their default.
    _always_written: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The item form: fields GCO always writes, fields read from an item or set explicitly, and
        fields that differ from their default; nested models likewise; unknown keys as read."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            keep = name in self._always_written or name in self.model_fields_set
            if keep or value != info.get_default(call_default_factory=True):
                out[name] = _dump(value)
        out.update(_dump(self.model_extra or {}))
        return out


def _dump(value: Any) -> Any:
    if isinstance(value, _ItemModel):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _dump(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(item) for item in value]
    return value


class Toleration(_ItemModel):
    """A Kubernetes toleration, with Kubernetes' own key names and rules: the key is a label key, the
    value a label value, ``tolerationSeconds`` only with effect ``NoExecute``."""

    key: TolerationKey | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] | None = None
    tolerationSeconds: Int | None = None  # Kubernetes' own field name

    @field_validator("tolerationSeconds")
    @classmethod
    def _only_for_no_execute(cls, seconds: int | None, info: ValidationInfo) -> int | None:
        if seconds is not None and info.data.get("effect") != "NoExecute":
            raise ValueError("tolerationSeconds is only allowed with effect 'NoExecute'")
        return seconds

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator 'Exists' must not have a value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator 'Exists'")
        return self


class Resources(_ItemModel):
    """Container resource requests and limits (quantities as strings, e.g. '4Gi')."""

    requests: dict[ResourceName, Quantity] = Field(default_factory=dict)
    limits: dict[ResourceName, Quantity] = Field(default_factory=dict)


class AutoscalingMetric(_ItemModel):
    type: MetricType = "cpu"
    target: Annotated[int, BeforeValidator(integral), Field(ge=1, le=100)] = 70


class AutoscalingSpec(_ItemModel):
    """Horizontal autoscaling; with no metrics, CPU at 70 % (as GCO's monitor)."""

    enabled: bool = False
    min_replicas: Annotated[int, BeforeValidator(integral), Field(ge=1, le=INT32_MAX)] = 1
    max_replicas: Annotated[int, BeforeValidator(integral), Field(ge=1, le=INT32_MAX)] = 10
    metrics: Annotated[list[AutoscalingMetric], BeforeValidator(no_set)] = Field(
        default_factory=lambda: [AutoscalingMetric()]
    )

    @model_validator(mode="after")
    def _check(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        return self


class CanarySpec(_ItemModel):
    """A canary Deployment taking ``weight`` % of the traffic (default 10, as GCO's monitor)."""

    _always_written: ClassVar[frozenset[str]] = frozenset({"image", "weight", "replicas"})

    image: Image
    weight: Annotated[int, BeforeValidator(integral), Field(ge=1, le=99)] = 10
    replicas: NonNegativeInt = 1


class EndpointSpec(_ItemModel):
    """What to run: GCO's ``InferenceEndpointSpec`` plus the keys GCO's CLI adds (``accelerator``,
    ``region_image_uris``)."""

    _always_written: ClassVar[frozenset[str]] = frozenset(
        {"image", "port", "replicas", "gpu_count", "health_check_path"}
    )

    image: Image
    port: Annotated[int, BeforeValidator(integral), Field(ge=1, le=65535)] = 8000
    replicas: NonNegativeInt = 1
    gpu_count: NonNegativeInt = 1
    gpu_type: str | None = None
    model_path: str | None = None
    model_source: Annotated[str, AfterValidator(check_model_source)] | None = None
    health_check_path: HttpPath = "/health"
    env: dict[EnvName, Str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    command: Annotated[list[str], BeforeValidator(no_set)] | None = None
    args: Annotated[list[str], BeforeValidator(no_set)] | None = None
    tolerations: Annotated[list[Toleration], BeforeValidator(no_set)] | None = None
    node_selector: Labels | None = None
    autoscaling: AutoscalingSpec | None = None
    canary: CanarySpec | None = None
    capacity_type: CapacityType | None = None
    accelerator: Accelerator = "nvidia"
    region_image_uris: dict[NonEmptyStr, Image] = Field(default_factory=dict)
    #: Ours (GCO has no such keys): the record says its images (primary and canary) run as a non-root
    #: user, so its pods get ``runAsNonRoot`` (Pod Security ``restricted``); ``run_as_user`` picks the
    #: uid when the image's USER is not a numeric non-zero uid.
    run_as_non_root: StrictBool | None = None
    run_as_user: Annotated[int, BeforeValidator(integral), Field(ge=1, le=INT32_MAX)] | None = None

    @field_validator("run_as_user")
    @classmethod
    def _user_needs_non_root(cls, user: int | None, info: ValidationInfo) -> int | None:
        if user is not None and info.data.get("run_as_non_root") is not True:
            raise ValueError("is only used with run_as_non_root: true (set both, or neither)")
        return user

    @property
    def non_root(self) -> bool:
        """Whether the record opted in to running its containers as a non-root user."""
        return self.run_as_non_root is True

    def image_for_region(self, region: str) -> str:
        """The image to run in ``region``: ``region_image_uris[region]`` if set, else ``image``."""
        return self.region_image_uris.get(region) or self.image

    def with_changes(self, **changes: Any) -> EndpointSpec:
        """A validated copy with ``changes`` applied (``None`` removes an optional field); raises
        ``InvalidEndpointError`` with paths under ``spec.``."""
        data = self.to_dict()
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = _dump(value)
        return parse_spec(data)


class RegionStatus(_ItemModel):
    """What one region's fleet last reported for an endpoint (``region_status.<region>``)."""

    _always_written: ClassVar[frozenset[str]] = frozenset(
        {"state", "replicas_ready", "replicas_desired", "last_sync"}
    )

    state: RegionState
    replicas_ready: NonNegativeInt = 0
    replicas_desired: NonNegativeInt = 0
    #: Replicas of the primary Deployment already at its current template (rollout progress). Ours
    #: only: GCO's monitor never writes it, so it is absent (None) on its items and written only when known.
    replicas_updated: NonNegativeInt | None = None
    last_sync: str | None = None
    error: str | None = None
    #: The record's ``updated_at`` this report is about (ours only, like Kubernetes' observedGeneration):
    #: a region's ``running`` counts for promotion only while it reports on the record as it is now.
    observed_updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for key in ("last_sync", "error", "replicas_updated", "observed_updated_at"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def last_sync_at(self) -> datetime | None:
        """``last_sync`` as an aware datetime (naive values are taken as UTC); None if absent or junk."""
        return parse_timestamp(self.last_sync)

    def same_report(self, other: RegionStatus) -> bool:
        """Whether ``other`` says the same thing (state, replica counts, error, the record version it is
        about), ignoring ``last_sync``."""
        return self._report() == other._report()

    def _report(self) -> tuple[object, ...]:
        counts = (self.replicas_ready, self.replicas_desired, self.replicas_updated)
        return (self.state, *counts, self.error or None, self.observed_updated_at)


class Endpoint(_ItemModel):
    """One record of the ``gco-inference-endpoints`` table."""

    _always_written: ClassVar[frozenset[str]] = frozenset(
        {
            "endpoint_name",
            "desired_state",
            "target_regions",
            "namespace",
            "spec",
            "ingress_path",
            "created_at",
            "updated_at",
            "region_status",
        }
    )

    endpoint_name: Annotated[str, AfterValidator(validate_endpoint_name)]
    desired_state: DesiredState = "deploying"
    target_regions: Annotated[list[NonEmptyStr], BeforeValidator(no_set)] = Field(default_factory=list)
    namespace: Annotated[str, AfterValidator(check_namespace)] = DEFAULT_NAMESPACE
    spec: EndpointSpec
    ingress_path: IngressPath = ""
    created_at: str | None = None
    updated_at: str | None = None
    region_status: dict[NonEmptyStr, RegionStatus] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict)
    created_by: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_ingress_path(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and not data.get("ingress_path")
            and isinstance(data.get("endpoint_name"), str)
        ):
            return {**data, "ingress_path": public_path(data["endpoint_name"])}
        return data

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Endpoint:
        """Read a table item (raw boto3 or already Decimal-converted). Raises ``InvalidEndpointError``
        naming every bad field; never any other exception."""
        if not isinstance(item, Mapping):
            raise InvalidEndpointError([("(record)", f"must be a map, got {type(item).__name__}")])
        name = item.get("endpoint_name")
        try:
            return cls.model_validate(from_dynamo(item))
        except ValidationError as exc:
            raise InvalidEndpointError(problems(exc), name if isinstance(name, str) else None) from None
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise InvalidEndpointError([("(record)", str(exc) or type(exc).__name__)]) from None

    @classmethod
    def new(
        cls,
        name: str,
        spec: EndpointSpec,
        target_regions: list[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        labels: Mapping[str, str] | None = None,
        created_by: str | None = None,
        now: datetime | None = None,
    ) -> Endpoint:
        """A new record as GCO's store creates it: ``deploying``, ``created_at == updated_at``, no region
        status; ``labels``/``created_by`` only when given."""
        stamp = iso_now(now)
        item: dict[str, Any] = {
            "endpoint_name": name,
            "desired_state": DEPLOYING,
            "target_regions": list(target_regions),
            "namespace": namespace,
            "spec": spec.to_dict(),
            "ingress_path": public_path(name),
            "created_at": stamp,
            "updated_at": stamp,
            "region_status": {},
        }
        if labels:
            item["labels"] = dict(labels)
        if created_by:
            item["created_by"] = created_by
        return cls.from_item(item)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item, as GCO writes it (floats as strings, ints as ints, ``labels`` and
        ``created_by`` only when set)."""
        item = self.to_dict()
        for key in ("labels", "created_by"):
            if not item.get(key) and key not in self.model_fields_set:
                item.pop(key, None)
        written: dict[str, Any] = to_dynamo(item)
        return written

    def targets(self, region: str) -> bool:
        return region in self.target_regions


def parse_spec(data: Mapping[str, Any]) -> EndpointSpec:
    """Validate a spec map alone (CLI edits); raises ``InvalidEndpointError`` with ``spec.`` paths."""
    try:
        return EndpointSpec.model_validate(from_dynamo(data))
    except ValidationError as exc:
        raise InvalidEndpointError([(f"spec.{path}", msg) for path, msg in problems(exc)]) from None
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise InvalidEndpointError([("spec", str(exc) or type(exc).__name__)]) from None


class RecordHeader(BaseModel):
    """The lenient view of a record: what the fleet needs to report on it even when its spec is
    invalid. ``from_item`` never raises for a record whose ``endpoint_name`` is a string."""

    model_config = ConfigDict(frozen=True)

    endpoint_name: str
    desired_state: str | None = None
    target_regions: list[str] = Field(default_factory=list)
    region_status: dict[str, Any] = Field(default_factory=dict)
    updated_at: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RecordHeader:
        name = item.get("endpoint_name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            raise InvalidEndpointError([("endpoint_name", "must be a string")])
        regions = item.get("target_regions")
        status = item.get("region_status")
        if isinstance(regions, set | frozenset):  # a string set: invalid, but it names the regions to tell
            regions = sorted(r for r in regions if isinstance(r, str))
        return cls.model_construct(
            endpoint_name=name,
            desired_state=_str_or_none(item.get("desired_state")),
            target_regions=[r for r in regions if isinstance(r, str)] if isinstance(regions, list) else [],
            region_status=from_dynamo(dict(status)) if isinstance(status, Mapping) else {},
            updated_at=_str_or_none(item.get("updated_at")),
        )

    def targets(self, region: str) -> bool:
        return region in self.target_regions


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
