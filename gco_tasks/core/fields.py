"""The fields of an endpoint record: what each accepts, and how DynamoDB's numbers become Python's.

Where it stands in the flow: under ``records``, whose models are built from the annotated types here. More
in docs/architecture.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from gco_tasks.core.conventions import CANARY_SUFFIX

MAX_ENDPOINT_NAME_LENGTH: Final = 53
INT32_MAX: Final = 2**31 - 1

# --------------------------------------------------------------------------------------------------
# Field checks (pure functions; each raises ValueError with a message saying what is accepted)
# --------------------------------------------------------------------------------------------------

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/=+,@-]*)?$")
_HF_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_ID = re.compile(rf"^({_HF_PART}/)?{_HF_PART}$")
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
_NO_SPACE = re.compile(r"^\S+$")


def validate_endpoint_name(name: str) -> str:
    """An endpoint name must be a DNS-1035 label of at most 53 characters, so that ``inference-{name}``
    and ``{name}-canary`` stay valid Kubernetes names. Returns the name; raises ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError("must be a non-empty string")
    if len(name) > MAX_ENDPOINT_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_ENDPOINT_NAME_LENGTH} characters (got {len(name)})")
    if not _DNS_1035.match(name):
        raise ValueError(
            "must be lower-case letters, digits and '-', start with a letter and end with a letter or "
            "digit (a DNS-1035 label, e.g. 'my-llm')"
        )
    if name.endswith(CANARY_SUFFIX):
        raise ValueError(
            f"must not end in '{CANARY_SUFFIX}': that is the name of endpoint "
            f"'{name.removesuffix(CANARY_SUFFIX)}'s canary Deployment and Service, which this endpoint "
            "would take over; choose another name"
        )
    return name


def check_namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_1123_LABEL.match(value):
        raise ValueError("must be a DNS-1123 label: lower-case letters, digits and '-', at most 63 chars")
    return value


def _check_label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_1123_SUBDOMAIN.match(prefix)):
        raise ValueError("label key prefix must be a DNS subdomain (e.g. 'example.com/name')")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            "label key must be at most 63 characters of letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return key


def _check_resource_name(key: str) -> str:
    """A container resource name is a qualified name, as a label key ('cpu', 'nvidia.com/gpu'). Bounded,
    too: a map key of over 1024 characters cannot be sent in a server-side apply body (YAML's limit on
    an implicit key), so an unbounded one would block the endpoint forever."""
    try:
        return _check_label_key(key)
    except ValueError:
        raise ValueError(
            "resource names are qualified names such as 'cpu', 'memory' or 'nvidia.com/gpu' (an optional "
            "DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_', '.')"
        ) from None


def _check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(
            "label value must be empty or at most 63 characters of letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_env_name(key: str) -> str:
    if not _ENV_NAME.match(key):
        raise ValueError("environment variable names are letters, digits and '_', not starting with a digit")
    return key


def check_model_source(value: str) -> str:
    if value.startswith("s3://"):
        if not _S3_URI.match(value):
            raise ValueError(
                "S3 source must be s3://bucket/key with a valid bucket name and a key of letters, digits "
                "and !_.*'()/=+,@- only"
            )
        return value
    if not _HF_ID.match(value):
        raise ValueError("must be s3://bucket/key or a Hugging Face model id such as 'org/model-name'")
    return value


def check_toleration_key(key: str) -> str:
    """A label key, or empty (with operator ``Exists``: tolerate every taint)."""
    return _check_label_key(key) if key else key


#: An ALB target group's health-check path holds at most 1,024 characters (AWS's limit).
MAX_HEALTH_CHECK_PATH_LENGTH: Final = 1024
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$")


def check_health_check_path(value: str) -> str:
    """A health-check path as the ALB takes it (the Service's and Ingress's ``healthcheck-path``
    annotation) and the kubelet probes it: ``/``, RFC 3986 path characters, an optional query, at most
    1,024 characters. A value the load balancer refuses would fail the Ingress and, in an IngressGroup,
    every endpoint behind the shared ALB. Pure; raises ``ValueError``."""
    if len(value) > MAX_HEALTH_CHECK_PATH_LENGTH:
        raise ValueError(
            f"must be at most {MAX_HEALTH_CHECK_PATH_LENGTH} characters (an ALB health check's limit; "
            f"got {len(value)})"
        )
    if not _HEALTH_PATH.match(value):
        raise ValueError(
            "must be a URL path starting with '/' of letters, digits and -._~!$&'()*+,;=:@%/ with an "
            "optional ?query (e.g. '/health'), as the ALB's health check accepts it"
        )
    return value


#: Every endpoint's path on the shared load balancer lies under this prefix (GCO writes
#: ``/inference/{name}``).
INGRESS_PREFIX: Final = "/inference/"
#: An ALB listener rule's path condition holds at most 128 characters.
MAX_INGRESS_PATH_LENGTH: Final = 128
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")


def check_ingress_path(value: str) -> str:
    """An endpoint's path on the shared load balancer: ``/inference/`` and at least one non-empty
    segment, RFC 3986 path characters but no ``*``/``?`` (ALB wildcards), no ``.``/``..`` or empty
    segment (an optional trailing ``/``), no encoded ``/``, at most 128 characters. ``/`` or a path
    outside ``/inference/`` would take the traffic of every other service behind the same load
    balancer; the rest is what kube-apiserver refuses in an Ingress path. Pure; raises ``ValueError``."""
    if not value:  # absent: the model fills in /inference/{name}
        return value
    if "*" in value or "?" in value:
        raise ValueError(
            "must not contain '*' or '?': the AWS Load Balancer Controller refuses a wildcard in a Prefix "
            "path, and an Ingress it cannot build stops every endpoint's route changes on the shared ALB "
            f"(write the literal path, such as '{INGRESS_PREFIX}my-llm')"
        )
    segments = value.removeprefix(INGRESS_PREFIX).removesuffix("/").split("/")
    if not value.startswith(INGRESS_PREFIX) or segments == [""]:
        raise ValueError(
            f"must be a path under {INGRESS_PREFIX} with at least one non-empty segment after it, such as "
            f"'{INGRESS_PREFIX}my-llm': the load balancer is shared, and '/' or a path outside "
            f"{INGRESS_PREFIX} would take other services' traffic"
        )
    if len(value) > MAX_INGRESS_PATH_LENGTH:
        raise ValueError(
            f"must be at most {MAX_INGRESS_PATH_LENGTH} characters (an ALB path condition's limit)"
        )
    for segment in segments:
        if segment in ("", ".", "..") or not _PATH_SEGMENT.match(segment) or "%2f" in segment.lower():
            raise ValueError(
                "must be '/'-separated segments of letters, digits and -._~!$&'()*+,;=:@%, "
                "without an empty, '.' or '..' segment or an encoded '/' (Kubernetes refuses those)"
            )
    return value


def _check_image(value: str) -> str:
    if not value or not _NO_SPACE.match(value):
        raise ValueError("must be a non-empty container image reference without spaces")
    return value


def _check_quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError("must be a Kubernetes quantity such as '500m', '2', '4Gi'")
    return value


def no_set(value: Any) -> Any:
    """A list field must be a list: a DynamoDB set (SS, NS, BS) has no order (and pydantic would take it
    as a list in whatever order it iterates)."""
    if isinstance(value, set | frozenset):
        raise ValueError("must be a list; a DynamoDB set (SS/NS/BS) has no order: write it as a list (L)")
    return value


def _check_non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# --------------------------------------------------------------------------------------------------
# Number handling: DynamoDB Decimals in, GCO's floats-as-strings out
# --------------------------------------------------------------------------------------------------


def integral(value: Any) -> Any:
    """Accept ints as DynamoDB and GCO hand them over (``Decimal('2')``, ``2.0``, ``'2'``); leave anything
    else for pydantic to reject with its own message. Booleans are not numbers here."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return value
    if isinstance(value, float | Decimal):
        number = Decimal(value) if isinstance(value, float) and math.isfinite(value) else value
        if not isinstance(number, Decimal) or not number.is_finite() or abs(number) > 2**63:
            raise ValueError(f"must be a whole number (got {value})")
        if number != number.to_integral_value():
            raise ValueError(f"must be a whole number (got {value})")
        return int(number)
    return value


def _number_to_str(value: Any) -> Any:
    """Env values, resource quantities and label values are strings; GCO items may carry them as numbers."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(_plain_number(value)) if isinstance(value, Decimal) else str(value)
    return value


def _plain_number(value: Decimal) -> int | float:
    if value.is_nan():
        return math.nan
    if value.is_infinite():
        return float(value)
    return int(value) if value == value.to_integral_value() else float(value)


def from_dynamo(value: Any) -> Any:
    """DynamoDB value → plain Python, as GCO's store reads it: ``Decimal`` → int or float, recursively."""
    if isinstance(value, Decimal):
        return _plain_number(value)
    if isinstance(value, Mapping):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [from_dynamo(item) for item in value]
    if isinstance(value, set | frozenset):
        return {from_dynamo(item) for item in value}
    return value


def json_fallback(value: Any) -> Any:
    """``json.dumps``'s ``default`` for what a DynamoDB item may hold besides JSON's types: a number
    (``Decimal``), a set (sorted, so equal sets give equal text) or a binary value (boto3's ``Binary``,
    whose ``str`` is bytes: ``default=str`` would crash on it), the rest as its ``repr``."""
    if isinstance(value, Decimal):
        return _plain_number(value)
    if isinstance(value, set | frozenset):
        return sorted(
            (json_fallback(item) if not isinstance(item, str) else item for item in value), key=repr
        )
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    raw = getattr(value, "value", None)  # boto3.dynamodb.types.Binary
    if isinstance(raw, bytes | bytearray):
        return f"<{len(raw)} bytes>"
    return repr(value)


def to_dynamo(value: Any) -> Any:
    """Plain Python → DynamoDB value, as GCO's store writes it: floats become strings, ints stay ints."""
    if isinstance(value, Mapping):
        return {key: to_dynamo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(item) for item in value]
    if isinstance(value, float):
        return str(value)
    return value


Int = Annotated[int, BeforeValidator(integral)]
NonNegativeInt = Annotated[int, BeforeValidator(integral), Field(ge=0, le=INT32_MAX)]
Str = Annotated[str, BeforeValidator(_number_to_str)]
Quantity = Annotated[str, BeforeValidator(_number_to_str), AfterValidator(_check_quantity)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
ResourceName = Annotated[str, AfterValidator(_check_resource_name)]
LabelValue = Annotated[str, BeforeValidator(_number_to_str), AfterValidator(_check_label_value)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Image = Annotated[str, AfterValidator(_check_image)]
HttpPath = Annotated[str, AfterValidator(check_health_check_path)]
IngressPath = Annotated[str, AfterValidator(check_ingress_path)]
TolerationKey = Annotated[str, AfterValidator(check_toleration_key)]
NonEmptyStr = Annotated[str, AfterValidator(_check_non_empty)]
Labels = dict[LabelKey, LabelValue]


# --------------------------------------------------------------------------------------------------
# Timestamps and validation messages
# --------------------------------------------------------------------------------------------------


def iso_now(now: datetime | None = None) -> str:
    """GCO's timestamp format: ``datetime.now(UTC).isoformat()``."""
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat()


def parse_timestamp(value: object) -> datetime | None:
    """An ISO timestamp as an aware datetime (naive → UTC); None when absent or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [(_path(error["loc"]), _message(error)) for error in exc.errors()]


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif _is_type_tag(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(record)"


def _is_type_tag(part: str) -> bool:
    """pydantic puts union member tags (``function-after[...]``, ``literal[...]``, ``int``) into locs."""
    return bool(_TYPE_TAG.match(part))


_TYPE_TAG: Final = re.compile(
    r"^(function-(after|before|plain|wrap)|literal|constrained-\w+|nullable)\[.*\]$"
)


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    given = error.get("input")
    if isinstance(given, str | int | float | bool | Decimal) and error["type"] != "value_error":
        return f"{message} (got {_short(given)})"
    return message


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
