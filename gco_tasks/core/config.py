"""Settings: the one typed object every other module reads its configuration from.

Where it stands in the flow: at the very start. More in docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gco_tasks.core import regions
from gco_tasks.core.conventions import queue_for_region
from gco_tasks.core.fields import check_toleration_key
from gco_tasks.core.images import check_image_reference, is_pinned
from gco_tasks.core.redis_target import RedisTarget, RedisUrlError, mask_url, parse_redis_url
from gco_tasks.core.rendering.policy import (
    ANY_KEY,
    DEFAULT_ALLOWED_TOLERATION_KEYS,
    DEFAULT_MAX_CPU,
    DEFAULT_MAX_CPU_PER_ENDPOINT,
    DEFAULT_MAX_GPUS,
    DEFAULT_MAX_GPUS_PER_ENDPOINT,
    DEFAULT_MAX_MEMORY,
    DEFAULT_MAX_REPLICAS,
    positive_quantity,
)

#: The longest countdown of a task retry (exponential backoff with jitter, or a server's Retry-After,
#: capped): ``FleetTask.retry_backoff_max``.
RETRY_DELAY_MAX_SECONDS: Final = 60
#: Added to the longest honest unacknowledged time of a message (see ``visibility_timeout_seconds``).
VISIBILITY_MARGIN_SECONDS: Final = 30


def _cap_quantity(value: str) -> str:
    positive_quantity(value)
    return value


_SHARED_DIR_SEGMENT: Final = re.compile(r"^[A-Za-z0-9._-]+$")


def _shared_dirs(value: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("/") for part in value.split(",") if part.strip().strip("/"))


def _check_shared_dirs(value: str) -> str:
    for directory in _shared_dirs(value):
        segments = directory.split("/")
        if any(s in ("", ".", "..") or not _SHARED_DIR_SEGMENT.match(s) for s in segments):
            raise ValueError(
                f"{directory!r} is not a directory under /models: '/'-separated names of letters, digits "
                "and ._- without '.' or '..' (e.g. 'shared' or 'base-models/llama')"
            )
    return value


def _toleration_keys(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _check_toleration_keys(value: str) -> str:
    for key in _toleration_keys(value):
        if key != ANY_KEY:
            try:
                check_toleration_key(key)
            except ValueError as exc:
                raise ValueError(f"{key!r}: {exc} (or '*' for any key)") from None
    return value


_REGISTRY_ENTRY: Final = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._/-]+)?$")


def _registries(value: str) -> tuple[str, ...]:
    return tuple(part.strip().rstrip("/").lower() for part in value.split(",") if part.strip())


def _check_registries(value: str) -> str:
    for entry in _registries(value):
        if not _REGISTRY_ENTRY.match(entry) or (entry.startswith("*.") and "/" in entry):
            raise ValueError(
                f"{entry!r} is not a registry: a host such as 'public.ecr.aws', a host and path prefix such "
                "as 'docker.io/vllm', or '*.' and a domain such as '*.dkr.ecr.us-east-1.amazonaws.com'"
            )
    return value


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
    unschedulable_grace_seconds: int = Field(
        300,
        ge=0,
        le=3600,
        description=(
            "Seconds a new pod may wait for a node (Karpenter or the cluster autoscaler bringing one up) "
            "before the region reports the scheduler's reason as an error."
        ),
    )

    # --- gco-tasks' own ---
    redis_url: str = Field(
        "redis://localhost:6379/0",
        repr=False,
        description="Broker, locks and beat (per region): redis://, rediss:// or sentinel:// (README).",
    )
    redis_sentinel_master: str = Field(
        "", description="With a sentinel:// REDIS_URL: the name the sentinels monitor the primary under."
    )
    redis_allow_unverified_tls: bool = Field(
        False,
        description="Accept ssl_cert_reqs=none/optional in a rediss:// REDIS_URL (never in production).",
    )
    lock_lease_seconds: int = Field(
        10,
        ge=2,
        le=600,
        description="TTL of endpoint and fan-out locks, renewed every third of it while their task runs: "
        "a killed worker's lock frees itself this long after its death.",
    )
    heartbeat_interval_seconds: int = Field(
        10,
        ge=1,
        le=300,
        description="The worker touches WORKER_HEARTBEAT_FILE this often while Redis answers PING; beat "
        "wakes at least this often and touches BEAT_HEARTBEAT_FILE on each tick that reached Redis.",
    )
    beat_heartbeat_file: str = Field(
        "/tmp/gco-tasks-beat.heartbeat", description="File beat touches after each tick; its probe reads it."
    )
    beat_lock_timeout_seconds: int = Field(
        40,
        ge=2,
        le=3600,
        description="TTL of RedBeat's lock: a standby beat takes over at most this long (plus one beat "
        "loop) after the active one dies.",
    )
    dynamodb_connect_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="botocore connect timeout of each DynamoDB attempt."
    )
    dynamodb_read_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="botocore read timeout of each DynamoDB attempt."
    )
    dynamodb_max_attempts: int = Field(
        3, ge=1, le=10, description="DynamoDB attempts per call (botocore standard retry mode, jittered)."
    )
    known_regions: str = Field(
        "",
        description="Comma-separated regions the CLI accepts and a worker or beat may serve (empty: the AWS "
        "commercial regions).",
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
    allowed_image_registries: Annotated[str, AfterValidator(_check_registries)] = Field(
        "",
        description="Comma-separated registries (or registry/path prefixes, or *.domain) record images "
        "must come from (empty: any, off).",
    )
    inference_service_account: str = Field(
        "gco-service-account", min_length=1, description="ServiceAccount of inference pods."
    )
    inference_pod_lockdown: bool = Field(
        True,
        description="Inference pods get no API token, no privilege escalation, no capabilities and "
        "RuntimeDefault seccomp (false: GCO's pod template, for a cut-over that restarts nothing).",
    )
    allowed_toleration_keys: Annotated[str, AfterValidator(_check_toleration_keys)] = Field(
        ",".join(DEFAULT_ALLOWED_TOLERATION_KEYS),
        description="Comma-separated taint keys a record may tolerate ('*': any key).",
    )
    model_read_scope: Literal["share", "endpoint"] = Field(
        "share",
        description="What of the shared model volume (/models) an inference container may read, always "
        "read-only: 'share' (all of it, as GCO) or 'endpoint' (its own /models/<name> and "
        "MODEL_SHARED_DIRS).",
    )
    model_shared_dirs: Annotated[str, AfterValidator(_check_shared_dirs)] = Field(
        "",
        description="Comma-separated directories under /models every endpoint may read when "
        "MODEL_READ_SCOPE=endpoint (e.g. 'shared,base-models/llama').",
    )
    allow_wildcard_tolerations: bool = Field(
        False, description="Accept record tolerations without a key (they tolerate every taint)."
    )
    max_replicas_per_endpoint: int = Field(
        DEFAULT_MAX_REPLICAS,
        ge=1,
        description="Most replicas a record may ask for (replicas, autoscaling max_replicas, canary).",
    )
    max_gpus_per_pod: int = Field(
        DEFAULT_MAX_GPUS, ge=1, description="Most GPUs or Neuron devices a record may ask for per pod."
    )
    max_cpu_per_container: Annotated[str, AfterValidator(_cap_quantity)] = Field(
        DEFAULT_MAX_CPU, description="Most CPU an inference container may request or be limited to."
    )
    max_memory_per_container: Annotated[str, AfterValidator(_cap_quantity)] = Field(
        DEFAULT_MAX_MEMORY, description="Most memory an inference container may request or be limited to."
    )
    max_gpus_per_endpoint: int = Field(
        DEFAULT_MAX_GPUS_PER_ENDPOINT,
        ge=1,
        description="Most GPUs or Neuron devices one endpoint may run in all: per pod times its most "
        "replicas plus its canary's.",
    )
    max_cpu_per_endpoint: Annotated[str, AfterValidator(_cap_quantity)] = Field(
        DEFAULT_MAX_CPU_PER_ENDPOINT,
        description="Most CPU one endpoint may run in all: per pod (the larger of request and limit) times "
        "its most replicas plus its canary's.",
    )
    worker_heartbeat_file: str = Field(
        "/tmp/gco-tasks-worker.heartbeat", description="File the worker touches; the liveness probe reads it."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text, or one JSON object per line (text|json)."
    )
    kube_write_rate: float = Field(
        50.0,
        gt=0,
        le=100_000,
        description="Kubernetes writes per second of the whole region (every worker process together).",
    )
    kube_write_burst: int = Field(
        100, ge=1, le=1_000_000, description="Writes the region may send at once after a quiet spell."
    )
    region_redis_urls: SecretStr = Field(
        "",  # validated into a SecretStr (validate_default)
        validate_default=True,
        description="CLI only: region=redis-url pairs, comma-separated; after a change the CLI asks each "
        "target region it can reach to reconcile at once (empty: off; the regions' cycles do it).",
    )
    stream_poll_seconds: int = Field(
        0,
        ge=0,
        le=3600,
        description="Read the table's DynamoDB Stream every this many seconds and reconcile the endpoints "
        "whose desired state changed at once (0: off; the table needs a stream, NEW_AND_OLD_IMAGES best).",
    )
    dynamodb_scan_segments: int = Field(
        0,
        ge=0,
        le=64,
        description="Parallel segments of the fan-out's Scan (0: one per ~2 MB of table, at most 8).",
    )
    metrics_port: int = Field(
        9808, ge=0, le=65535, description="Port of the Prometheus exporter of workers and beat (0: none)."
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        """The URL's own shape (the checks that involve other settings are ``_check_relations``')."""
        try:
            parse_redis_url(value, sentinel_master="-", allow_unverified_tls=True, echo=False)
        except RedisUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

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
        try:
            self.redis_target  # noqa: B018  (parsed here so a bad URL fails at start)
        except RedisUrlError as exc:
            raise ValueError(f"REDIS_URL {exc}") from None
        return self

    @property
    def redis_target(self) -> RedisTarget:
        """``REDIS_URL`` parsed: plain, TLS or Sentinel (``gco_tasks.core.redis_target``)."""
        return parse_redis_url(
            self.redis_url, self.redis_sentinel_master, allow_unverified_tls=self.redis_allow_unverified_tls
        )

    @property
    def allowed_image_registry_list(self) -> tuple[str, ...]:
        """``ALLOWED_IMAGE_REGISTRIES`` as a tuple of entries; empty: any registry."""
        return _registries(self.allowed_image_registries)

    @property
    def allowed_toleration_key_list(self) -> tuple[str, ...]:
        """``ALLOWED_TOLERATION_KEYS`` as a tuple of keys (``*``: any)."""
        return _toleration_keys(self.allowed_toleration_keys)

    @property
    def model_shared_directories(self) -> tuple[str, ...]:
        """``MODEL_SHARED_DIRS`` as directory names under /models, without slashes around them."""
        return _shared_dirs(self.model_shared_dirs)

    @property
    def dynamodb_call_bound_seconds(self) -> float:
        """The longest one DynamoDB call can block a worker: every attempt's connect and read timeouts,
        plus botocore's standard-mode backoff between attempts (at most 2**attempt s, jittered)."""
        attempts = self.dynamodb_max_attempts
        per_attempt = self.dynamodb_connect_timeout_seconds + self.dynamodb_read_timeout_seconds
        backoff = sum(min(2**n, 20) for n in range(attempts - 1))
        return float(attempts * per_attempt + backoff)

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
        """Redis transport visibility timeout: how long a message a worker took may stay unacknowledged
        before Redis hands it to another worker. Messages are acknowledged late (after the task), and a
        worker holds a retry's message unacknowledged until its countdown is due, so the longest honest
        wait is the longest retry countdown plus the hard time limit; a margin covers clock skew and a
        busy pool. Longer only delays the redelivery of a dead worker's task (Celery's default: an hour);
        shorter runs a live task twice (harmless, idempotent, but wasted)."""
        return RETRY_DELAY_MAX_SECONDS + self.task_time_limit_seconds + VISIBILITY_MARGIN_SECONDS

    @property
    def message_ttl_seconds(self) -> int:
        """How long a reconcile message may wait in the queue before it is dropped (and sent again by a
        later fan-out): a few cycles."""
        return max(60, self.reconcile_interval_seconds * 4)


#: The regions a worker or beat may serve when ``KNOWN_REGIONS`` is empty: AWS's commercial partition.
def region_problem(settings: Settings) -> str | None:
    """Why this worker or beat cannot serve ``REGION``, in one sentence naming the setting; None when it
    can. It must be given (GCO's monitor defaulted to us-east-1: a fleet started without it served
    another region's queue and wrote into its status) and known (``KNOWN_REGIONS``, or AWS's regions):
    a typo would run a fleet on a queue no record targets."""
    if not settings.region_is_explicit:
        return (
            "REGION is not set: set it to the region this fleet reconciles (e.g. REGION=us-east-1); "
            "the fleet does not guess it"
        )
    problem = regions.region_problem(settings.region, regions.known_regions(settings.known_regions))
    return f"REGION: {problem}" if problem else None


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
        if field == "redis_url" and isinstance(given, str):
            given = mask_url(given)
        shown = f" (got {given!r})" if field and not isinstance(given, dict) else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        # A check of several settings names its variables itself.
        problems.append(f"{variable}: {message}{shown}" if field else message)
    return "invalid configuration: " + "; ".join(problems)
