"""The DynamoDB store: reads and writes GCO's ``gco-inference-endpoints`` table.

Where it stands in the flow: the desired state's edge. ``fan_out`` scans it, ``reconcile_endpoint`` reads
one record and reports ``region_status`` back, ``purge`` deletes finished records, and the CLI edits
records. Item shape and models live in ``gco_tasks.endpoints``; this module is the thin I/O adapter
around a boto3 client, plus the one pure decision it owns (``status_needs_write``).

What it fixes against GCO's store: the Scan is paginated (GCO's silently stopped at 1 MB); reads are
consistent; spec edits are read-modify-write guarded by ``updated_at`` (GCO lost concurrent updates);
status writes happen only when something changed or the heartbeat is due, are conditional on the
record existing, and do not bump ``updated_at``; purges are conditional on the record being unchanged.
Throttling, 5xx and connection failures raise ``TransientStoreError`` so callers can retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from pydantic import ValidationError

from gco_tasks.endpoints import (
    DELETED,
    DEPLOYING,
    RUNNING,
    DesiredState,
    Endpoint,
    EndpointSpec,
    InvalidEndpointError,
    RegionStatus,
    from_dynamo,
    iso_now,
    to_dynamo,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from gco_tasks.config import Settings

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS: Final = 300
SPEC_UPDATE_ATTEMPTS: Final = 5

_TRANSIENT_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class StoreError(RuntimeError):
    """DynamoDB refused or failed a call; the message says which call and why."""


class TransientStoreError(StoreError):
    """Throttling, a 5xx or a connection failure: retrying later may succeed."""


class EndpointNotFoundError(StoreError, LookupError):
    """No record of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"endpoint {name!r} not found")


class EndpointExistsError(StoreError):
    """A record of that name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"endpoint {name!r} already exists")


class EndpointDeletedError(StoreError):
    """The record is marked ``deleted``: a spec edit would resurrect an endpoint being torn down."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"endpoint {name!r} is being deleted; wait until it is purged, then deploy it again")


class MalformedRecordError(InvalidEndpointError):
    """The stored record itself does not validate (written by another tool or an older version): the
    edits that read-modify-write it refuse it; ``write_fields_if_unchanged`` is the way to fix it."""

    def __init__(self, problems: list[tuple[str, str]], name: str) -> None:
        super().__init__(problems, name)
        details = "; ".join(f"{path}: {message}" for path, message in problems)
        self.args = (f"endpoint {name!r} is malformed in the table ({details})",)


class ConcurrentUpdateError(StoreError):
    """The record kept changing under a read-modify-write; nothing was written."""


class _ConditionFailed(Exception):
    """Internal: a conditional write's condition did not hold."""


# --------------------------------------------------------------------------------------------------
# Pure decisions
# --------------------------------------------------------------------------------------------------


def status_needs_write(
    status: RegionStatus,
    previous: Mapping[str, Any] | RegionStatus | None,
    now: datetime,
    heartbeat_seconds: int,
) -> bool:
    """Whether a region status report must be written: the state, replica counts or error changed
    against ``previous`` (what the record holds now), or ``previous.last_sync`` is older than the
    heartbeat (or missing or unreadable)."""
    before = _as_status(previous)
    if before is None or not status.same_report(before):
        return True
    synced = before.last_sync_at()
    return synced is None or now - synced >= timedelta(seconds=heartbeat_seconds)


def _as_status(value: Mapping[str, Any] | RegionStatus | None) -> RegionStatus | None:
    if value is None or isinstance(value, RegionStatus):
        return value
    try:
        return RegionStatus.model_validate(from_dynamo(value))
    except (ValidationError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _encode(value: Any) -> dict[str, Any]:
    return _serializer.serialize(to_dynamo(value))  # type: ignore[return-value]


def _encode_as_read(value: Any) -> dict[str, Any]:
    """A value read from the table, encoded as it was stored (a number stays a number, unlike
    ``_encode``, which writes floats as strings the way GCO does)."""
    if isinstance(value, float):
        return _serializer.serialize(Decimal(repr(value)))  # type: ignore[return-value]
    return _encode(value)


def _decode_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    decoded = {key: _deserializer.deserialize(value) for key, value in raw.items()}
    result: dict[str, Any] = from_dynamo(decoded)
    return result


class EndpointStore:
    """GCO's endpoint table through a boto3 DynamoDB client."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.heartbeat_seconds = heartbeat_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> EndpointStore:
        """A store for ``INFERENCE_ENDPOINTS_TABLE_NAME`` in ``DYNAMODB_REGION`` (else ``REGION``).
        ``AWS_ENDPOINT_URL_DYNAMODB`` (boto3's own variable) points it at moto or DynamoDB Local."""
        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
        )
        client = boto3.client("dynamodb", region_name=settings.table_region, config=config)
        return cls(client, settings.inference_endpoints_table_name, settings.status_heartbeat_seconds)

    # ---- table ----

    def create_table(self, wait: bool = True) -> bool:
        """Create the table with GCO's schema (PK ``endpoint_name`` S, on-demand). False if it exists."""
        try:
            with self._call("CreateTable"):
                self.client.create_table(
                    TableName=self.table_name,
                    AttributeDefinitions=[{"AttributeName": "endpoint_name", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "endpoint_name", "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) == "ResourceInUseException":
                return False
            raise
        if wait:
            with self._call("DescribeTable"):
                self.client.get_waiter("table_exists").wait(
                    TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
                )
        return True

    # ---- reads ----

    def scan_items(self, target_region: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item (Decimals converted), page by page; only those targeting ``target_region`` if given.
        Unlike GCO's store this follows ``LastEvaluatedKey`` to the end."""
        params: dict[str, Any] = {"TableName": self.table_name}
        if target_region is not None:
            params["FilterExpression"] = "contains(target_regions, :region)"
            params["ExpressionAttributeValues"] = {":region": {"S": target_region}}
        paginator = self.client.get_paginator("scan")
        with self._call("Scan"):
            for page in paginator.paginate(**params):
                for raw in page.get("Items", []):
                    yield _decode_item(raw)

    def list_endpoints(
        self, target_region: str | None = None, desired_state: DesiredState | None = None
    ) -> list[Endpoint]:
        """Valid endpoints, newest first (as GCO lists them). Invalid records are skipped with a warning:
        callers that must report on them use ``scan_items`` with ``RecordHeader``."""
        endpoints = []
        for item in self.scan_items(target_region):
            try:
                endpoint = Endpoint.from_item(item)
            except InvalidEndpointError as exc:
                log.warning("skipping invalid record: %s", exc)
                continue
            if desired_state is None or endpoint.desired_state == desired_state:
                endpoints.append(endpoint)
        return sorted(endpoints, key=lambda e: e.created_at or "", reverse=True)

    def get_item(self, name: str) -> dict[str, Any] | None:
        """The raw item (Decimals converted), read consistently; None if there is none."""
        with self._call("GetItem"):
            response = self.client.get_item(
                TableName=self.table_name, Key=self._key(name), ConsistentRead=True
            )
        raw = response.get("Item")
        return _decode_item(raw) if raw else None

    def get(self, name: str) -> Endpoint:
        """The endpoint, read consistently. Raises ``EndpointNotFoundError`` or ``MalformedRecordError``."""
        item = self.get_item(name)
        if item is None:
            raise EndpointNotFoundError(name)
        try:
            return Endpoint.from_item(item)
        except InvalidEndpointError as exc:
            raise MalformedRecordError(exc.problems, name) from None

    # ---- desired-state writes (CLI) ----

    def create(self, endpoint: Endpoint) -> None:
        """Put a new record; ``EndpointExistsError`` if the name is taken."""
        try:
            self._write(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table_name,
                    Item=_encode(endpoint.to_item())["M"],
                    ConditionExpression="attribute_not_exists(endpoint_name)",
                ),
            )
        except _ConditionFailed:
            raise EndpointExistsError(endpoint.endpoint_name) from None

    def update_desired_state(
        self, name: str, state: DesiredState, expected_state: DesiredState | None = None
    ) -> bool:
        """Set ``desired_state`` (and ``updated_at``) if the record exists and, when ``expected_state`` is
        given, is still in it. Returns whether it wrote."""
        condition = "attribute_exists(endpoint_name)"
        values: dict[str, Any] = {":s": {"S": state}, ":u": {"S": iso_now()}}
        if expected_state is not None:
            condition += " AND desired_state = :expected"
            values[":expected"] = {"S": expected_state}
        return self._update(
            name,
            "SET desired_state = :s, updated_at = :u",
            condition,
            values,
        )

    def update_spec(
        self,
        name: str,
        mutate: Callable[[EndpointSpec], EndpointSpec],
        desired_state: DesiredState | None = DEPLOYING,
    ) -> Endpoint:
        """Read-modify-write of the spec: read consistently, apply ``mutate``, write back only if
        ``updated_at`` is unchanged since the read (so concurrent edits cannot silently lose one); retried
        a few times, then ``ConcurrentUpdateError``. ``desired_state`` is set too (GCO sets
        ``deploying``, which restarts a stopped endpoint); None keeps it. Returns the written record.
        A record marked ``deleted`` is not edited (``EndpointDeletedError``): GCO's CLI would silently
        bring it back to life."""
        for _ in range(SPEC_UPDATE_ATTEMPTS):
            current = self.get(name)
            if current.desired_state == DELETED:
                raise EndpointDeletedError(name)
            spec = mutate(current.spec)
            changes: dict[str, Any] = {"spec": spec.to_dict(), "updated_at": _later_than(current.updated_at)}
            if desired_state is not None:
                changes["desired_state"] = desired_state
            updated = Endpoint.from_item({**current.to_item(), **changes})
            if self._write_if_unchanged(name, current.updated_at, updated, list(changes)):
                return updated
            log.info("endpoint %s changed during an update; retrying", name)
        raise ConcurrentUpdateError(
            f"endpoint {name!r} kept changing during the update ({SPEC_UPDATE_ATTEMPTS} attempts); try again"
        )

    def write_fields_if_unchanged(
        self,
        name: str,
        read_item: Mapping[str, Any],
        fields: Mapping[str, Any],
        remove: Iterable[str] = (),
    ) -> bool:
        """SET the top-level ``fields`` and REMOVE the top-level keys ``remove`` of a record, only if its
        ``updated_at`` is still the one of ``read_item`` (compared as stored, whatever its type, so this
        works on records that do not validate). For ``repair`` and ``delete --force``; the caller puts a
        fresh ``updated_at`` in ``fields``. Returns whether it wrote."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets, removes = [], []
        for i, (key, value) in enumerate(fields.items()):
            names[f"#s{i}"] = key
            values[f":s{i}"] = _encode(value)
            sets.append(f"#s{i} = :s{i}")
        for i, key in enumerate(remove):
            names[f"#r{i}"] = key
            removes.append(f"#r{i}")
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
            )
            if part
        )
        if "updated_at" in read_item:
            condition = "attribute_exists(endpoint_name) AND updated_at = :read_updated_at"
            values[":read_updated_at"] = _encode_as_read(read_item["updated_at"])
        else:
            condition = "attribute_exists(endpoint_name) AND attribute_not_exists(updated_at)"
        return self._update(name, expression, condition, values, names)

    def scale(self, name: str, replicas: int) -> Endpoint:
        """Set ``spec.replicas`` (validated, >= 0), keeping the desired state."""
        return self.update_spec(name, lambda spec: spec.with_changes(replicas=replicas), desired_state=None)

    # ---- fleet writes ----

    def update_region_status(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        previous: Mapping[str, Any] | RegionStatus | None,
        now: datetime | None = None,
    ) -> bool:
        """Write ``region_status.<region>`` when ``status_needs_write`` says so (changed, or heartbeat due);
        ``last_sync`` is set to ``now``. Returns whether it wrote.

        The write is conditional on the record existing, so a report on a record purged meanwhile does not
        resurrect a partial item (returns False). It deliberately does NOT bump ``updated_at``: that
        attribute means "the desired state changed", and both the purge condition and the CLI's optimistic
        spec update rely on it not moving under status reports."""
        moment = now or datetime.now(UTC)
        if not status_needs_write(status, previous, moment, self.heartbeat_seconds):
            return False
        entry = status.model_copy(update={"last_sync": iso_now(moment)}).to_dict()
        values = {":s": _encode(entry)}
        try:
            return self._update(
                name,
                "SET region_status.#r = :s",
                "attribute_exists(endpoint_name)",
                values,
                names={"#r": region},
            )
        except StoreError as exc:
            if not _is_missing_map(exc):
                raise
        # The record has no region_status map at all (not written by GCO's store): create it.
        return self._update(
            name,
            "SET region_status = :m",
            "attribute_exists(endpoint_name) AND attribute_not_exists(region_status)",
            {":m": _encode({region: entry})},
        )

    def remove_region_status(self, name: str, region: str) -> bool:
        """Remove ``region_status.<region>`` (a region no longer targeted). Returns whether it was there."""
        return self._update(
            name,
            "REMOVE region_status.#r",
            "attribute_exists(region_status.#r)",
            {},
            names={"#r": region},
        )

    def promote_if_deploying(self, name: str) -> bool:
        """``deploying`` → ``running`` (bumping ``updated_at``, as a desired-state change), only if the
        record is still ``deploying``. Returns whether it wrote."""
        return self.update_desired_state(name, RUNNING, expected_state=DEPLOYING)

    def delete_if_unchanged(self, name: str, updated_at: str | None) -> bool:
        """Purge: delete the record only if it is still ``deleted`` and ``updated_at`` is the one read,
        so a record re-created under the same name survives. Returns whether it deleted."""
        unchanged, values = _updated_at_is(updated_at)
        values[":deleted"] = {"S": DELETED}
        condition = f"desired_state = :deleted AND {unchanged}"
        try:
            self._write(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table_name,
                    Key=self._key(name),
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                ),
            )
        except _ConditionFailed:
            return False
        return True

    # ---- plumbing ----

    def _key(self, name: str) -> dict[str, Any]:
        return {"endpoint_name": {"S": name}}

    def _update(
        self,
        name: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._key(name),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if names:
            params["ExpressionAttributeNames"] = names
        try:
            self._write("UpdateItem", lambda: self.client.update_item(**params))
        except _ConditionFailed:
            return False
        return True

    def _write_if_unchanged(
        self, name: str, updated_at: str | None, updated: Endpoint, fields: list[str]
    ) -> bool:
        item = updated.to_item()
        names = {f"#f{i}": field for i, field in enumerate(fields)}
        values = {f":v{i}": _encode(item[field]) for i, field in enumerate(fields)}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        unchanged, unchanged_values = _updated_at_is(updated_at)
        values.update(unchanged_values)
        return self._update(
            name, expression, f"attribute_exists(endpoint_name) AND {unchanged}", values, names
        )

    def _write(self, operation: str, call: Callable[[], object]) -> None:
        """Run a conditional write; a failed condition raises ``_ConditionFailed``."""
        try:
            with self._call(operation):
                call()
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) == _CONDITION_FAILED:
                raise _ConditionFailed from None
            raise

    @contextmanager
    def _call(self, operation: str) -> Iterator[None]:
        """Translate botocore failures into ``StoreError`` / ``TransientStoreError``."""
        try:
            yield
        except ClientError as exc:
            raise _translate(operation, self.table_name, exc) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise TransientStoreError(f"{operation} on {self.table_name}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"{operation} on {self.table_name}: {exc}") from exc


def _updated_at_is(updated_at: str | None) -> tuple[str, dict[str, Any]]:
    """The condition "``updated_at`` is still the one read" (absent when it was absent), with its value."""
    if updated_at is None:
        return "attribute_not_exists(updated_at)", {}
    return "updated_at = :read_updated_at", {":read_updated_at": {"S": updated_at}}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(operation: str, table: str, exc: ClientError) -> StoreError:
    code = _code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = exc.response.get("Error", {}).get("Message", str(exc))
    text = f"{operation} on {table}: {code}: {message}"
    if code == "ResourceNotFoundException":
        text += (
            " (does the table exist in this region? `gco-tasks endpoints create-table` creates it locally)"
        )
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientStoreError(text)
    return StoreError(text)


def _is_missing_map(exc: StoreError) -> bool:
    cause = exc.__cause__
    return (
        isinstance(cause, ClientError)
        and _code(cause) == "ValidationException"
        and "document path" in str(cause).lower()
    )


def later_than(previous: object) -> str:
    """A fresh ``updated_at`` that differs from ``previous`` (whatever it was) even within one clock tick."""
    return _later_than(previous if isinstance(previous, str) else None)


def _later_than(previous: str | None) -> str:
    """A fresh ``updated_at`` that differs from ``previous`` even within one clock tick."""
    stamp = iso_now()
    if stamp == previous:
        stamp = iso_now(datetime.now(UTC) + timedelta(microseconds=1))
    return stamp
