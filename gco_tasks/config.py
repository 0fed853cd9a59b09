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
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gco_tasks.conventions import queue_for_region
from gco_tasks.redis_target import RedisTarget, RedisUrlError, mask_url, parse_redis_url

#: The longest countdown of a task retry (exponential backoff with jitter, or a server's Retry-After,
#: capped): ``FleetTask.retry_backoff_max``.
RETRY_DELAY_MAX_SECONDS: Final = 60
#: Added to the longest honest unacknowledged time of a message (see ``visibility_timeout_seconds``).
VISIBILITY_MARGIN_SECONDS: Final = 30


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
        "", description="Comma-separated regions a worker or beat may serve (empty: AWS commercial regions)."
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
    model_sync_image: str = Field(
        "public.ecr.aws/aws-cli/aws-cli:2.22.35",
        min_length=1,
        description="Pinned image of the S3 model-sync init container.",
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
        try:
            self.redis_target  # noqa: B018  (parsed here so a bad URL fails at start)
        except RedisUrlError as exc:
            raise ValueError(f"REDIS_URL {exc}") from None
        return self

    @property
    def redis_target(self) -> RedisTarget:
        """``REDIS_URL`` parsed: plain, TLS or Sentinel (``gco_tasks.redis_target``)."""
        return parse_redis_url(
            self.redis_url, self.redis_sentinel_master, allow_unverified_tls=self.redis_allow_unverified_tls
        )

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
    def queue(self) -> str:
        """The Celery queue of this region's work."""
        return queue_for_region(self.region)

    @property
    def visibility_timeout_seconds(self) -> int:
        """Redis transport visibility timeout: how long a message a worker took may stay unacknowledged
        before Redis hands it to another worker. Messages are acknowledged late (after the task), and a
        worker holds a retry's message unacknowledged until its countdown is due, so the longest honest
        wait is the longest retry countdown plus the hard time limit; a margin covers clock skew and a
        busy pool. Longer only delays the redelivery of a dead worker's task (the issue's hour), shorter
        runs a live task twice (harmless, idempotent, but wasted)."""
        return RETRY_DELAY_MAX_SECONDS + self.task_time_limit_seconds + VISIBILITY_MARGIN_SECONDS

    @property
    def message_ttl_seconds(self) -> int:
        """How long a reconcile message may wait in the queue before it is dropped (and sent again by a
        later fan-out): a few cycles."""
        return max(60, self.reconcile_interval_seconds * 4)


#: The regions a worker or beat may serve when ``KNOWN_REGIONS`` is empty: AWS's commercial partition.
AWS_COMMERCIAL_REGIONS: Final = (
    *("us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-east-2"),
    *("ap-south-1", "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3"),
    *("ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5"),
    *("ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1"),
    *("eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1"),
    *("me-central-1", "me-south-1", "mx-central-1", "sa-east-1"),
)


def region_problem(settings: Settings) -> str | None:
    """Why ``REGION`` cannot be served (not in ``KNOWN_REGIONS``, or AWS's regions when that is empty);
    None when it can. A typo would otherwise run a fleet on a queue no record targets."""
    known = [part.strip() for part in settings.known_regions.split(",") if part.strip()]
    allowed = known or list(AWS_COMMERCIAL_REGIONS)
    if settings.region in allowed:
        return None
    where = "KNOWN_REGIONS" if known else "the AWS regions (set KNOWN_REGIONS to serve another)"
    return f"REGION={settings.region!r} is not one of {where}"


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
