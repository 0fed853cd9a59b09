"""Settings: the one typed object every other module reads its configuration from.

Where it stands in the flow: at the very start. Workers, beat, the CLI and the sandbox build a
``Settings`` from the environment once (``load_settings()``); nothing else reads ``os.environ``.
The variable names are GCO's own (``CLUSTER_NAME``, ``REGION``, ``INFERENCE_ENDPOINTS_TABLE_NAME`` ...)
so a region can swap GCO's monitor for this fleet without touching its configuration. A bad value
fails at start with a message naming the variable and what it accepts.

DynamoDB endpoint overrides (moto, DynamoDB Local) use boto3's own ``AWS_ENDPOINT_URL_DYNAMODB``;
there is deliberately no variable of ours for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gco_tasks.conventions import queue_for_region
from gco_tasks.images import check_image_reference, is_pinned


class ConfigError(ValueError):
    """A setting from the environment is invalid; the message names each variable and the fix."""


class Settings(BaseSettings):
    """Every setting of gco-tasks, read from environment variables of the same name (upper case)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- GCO's monitor variables (same names, same defaults) ---
    cluster_name: str = Field("gco-local", description="Name of the region's cluster (labels, logs).")
    region: str = Field("us-east-1", min_length=1, description="Region this fleet reconciles.")
    inference_endpoints_table_name: str = Field(
        "gco-inference-endpoints", min_length=3, description="DynamoDB table holding the desired state."
    )
    dynamodb_region: str = Field(
        "", description="Region of the DynamoDB table (global table replica); defaults to REGION."
    )
    inference_namespace: str = Field(
        "gco-inference", min_length=1, description="Namespace the inference objects live in."
    )
    reconcile_interval_seconds: int = Field(15, ge=1, le=3600, description="Seconds between fan-outs.")
    k8s_api_timeout: int = Field(30, ge=1, le=600, description="Timeout of each Kubernetes API call (s).")
    inference_unhealthy_threshold_seconds: int = Field(
        300, ge=0, description="Seconds at 0 ready replicas before the watchdog removes the Ingress."
    )

    # --- gco-tasks' own ---
    redis_url: str = Field(
        "redis://localhost:6379/0", pattern=r"^rediss?://", description="Broker, locks and beat (per region)."
    )
    known_regions: str = Field(
        "", description="Comma-separated regions the CLI accepts (empty: the AWS commercial regions)."
    )
    status_heartbeat_seconds: int = Field(
        300, ge=1, description="Rewrite an unchanged region status after this many seconds (liveness)."
    )
    watchdog_interval_seconds: int = Field(30, ge=1, description="Seconds between watchdog runs.")
    purge_interval_seconds: int = Field(300, ge=1, description="Seconds between purge runs.")
    task_soft_time_limit_seconds: int = Field(
        120, ge=1, description="Soft time limit of a task (raises inside it, so it can clean up)."
    )
    task_time_limit_seconds: int = Field(150, ge=1, description="Hard time limit of a task (kills it).")
    task_max_retries: int = Field(5, ge=0, le=50, description="Retries of a transient failure.")
    model_sync_image: Annotated[str, AfterValidator(check_image_reference)] = Field(
        "public.ecr.aws/aws-cli/aws-cli:2.22.35",
        min_length=1,
        description="Image of the S3 model-sync init container: repo:tag, or repo:tag@sha256:<digest>.",
    )
    require_image_digests: bool = Field(
        False, description="Refuse to start unless MODEL_SYNC_IMAGE is pinned by digest (production: true)."
    )
    inference_service_account: str = Field(
        "gco-service-account", min_length=1, description="ServiceAccount of inference pods."
    )
    worker_heartbeat_file: str = Field(
        "/tmp/gco-tasks-worker.heartbeat", description="File the worker touches; the liveness probe reads it."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or one JSON object per line (text|json)."
    )
    metrics_port: int = Field(
        9808, ge=0, le=65535, description="Port of the Prometheus exporter of workers and beat (0: none)."
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError(
                "TASK_SOFT_TIME_LIMIT_SECONDS must be below TASK_TIME_LIMIT_SECONDS "
                f"(got {self.task_soft_time_limit_seconds} >= {self.task_time_limit_seconds})"
            )
        if self.require_image_digests and not is_pinned(self.model_sync_image):
            raise ValueError(
                "MODEL_SYNC_IMAGE must be pinned by digest (repo:tag@sha256:<64 hex>) while "
                f"REQUIRE_IMAGE_DIGESTS is true (got {self.model_sync_image!r}): resolve it with "
                "`k8s/pin-image.sh --print IMAGE:TAG`"
            )
        return self

    @property
    def table_region(self) -> str:
        """The DynamoDB region: DYNAMODB_REGION, else REGION (as GCO's store does)."""
        return self.dynamodb_region or self.region

    @property
    def region_is_explicit(self) -> bool:
        """Whether REGION was given (the fleet refuses to guess it; GCO's monitor defaulted to us-east-1)."""
        return "region" in self.model_fields_set

    @property
    def queue(self) -> str:
        """The Celery queue of this region's work."""
        return queue_for_region(self.region)

    @property
    def visibility_timeout_seconds(self) -> int:
        """Redis transport visibility timeout: well above the hard time limit, so no task is redelivered
        while it is still running."""
        return max(3600, self.task_time_limit_seconds * 4)

    @property
    def message_ttl_seconds(self) -> int:
        """How long a reconcile message may wait in the queue before it is dropped (and sent again by a
        later fan-out): a few cycles."""
        return max(60, self.reconcile_interval_seconds * 4)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment (or ``environ``), raising ``ConfigError`` that names every
    bad variable and what it accepts."""
    try:
        if environ is None:
            return Settings(**overrides)
        values: dict[str, Any] = {
            key.lower(): value for key, value in environ.items() if key.lower() in Settings.model_fields
        }
        values.update(overrides)
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        variable = field.upper() or "settings"
        given = error.get("input")
        shown = f" (got {given!r})" if field and not isinstance(given, dict) else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{variable}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)
