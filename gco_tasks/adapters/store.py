"""The DynamoDB store: reads and writes GCO's ``gco-inference-endpoints`` table.

Where it stands in the flow: the desired state's edge. More in docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from gco_tasks.adapters import gcpause
from gco_tasks.adapters.dynamo_client import (
    ConditionFailed,
    StoreError,
    StoreUnavailableError,
    Table,
    TransientStoreError,
    client_for,
    decode_item,
    encode,
    is_missing_map,
    page_bytes,
    scan_pages,
    scan_segments_for,
    updated_at_is,
)
from gco_tasks.core.fields import iso_now
from gco_tasks.core.records import (
    DELETED,
    DEPLOYING,
    RUNNING,
    DesiredState,
    Endpoint,
    EndpointSpec,
    InvalidEndpointError,
    RegionStatus,
)
from gco_tasks.core.status import status_needs_write

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from gco_tasks.core.config import Settings

__all__ = [
    "ConcurrentUpdateError",
    "EndpointDeletedError",
    "EndpointExistsError",
    "EndpointNotFoundError",
    "EndpointStore",
    "StoreError",
    "StoreUnavailableError",
    "TransientStoreError",
]

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_SECONDS: Final = 300
SPEC_UPDATE_ATTEMPTS: Final = 5
#: Keys in one ``BatchGetItem`` call (DynamoDB's limit).
BATCH_GET_KEYS: Final = 100


# --------------------------------------------------------------------------------------------------
# Errors the CLI reports (the DynamoDB ones are ``gco_tasks.adapters.dynamo_client``'s)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


class EndpointStore:
    """GCO's endpoint table through a boto3 DynamoDB client."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS,
        segments: int = 0,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.heartbeat_seconds = heartbeat_seconds
        self.table = Table(client, table_name)
        self.segments = segments  # parallel Scan segments; 0: by the size of the last full Scan
        self.last_scan_bytes = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> EndpointStore:
        """A store for ``INFERENCE_ENDPOINTS_TABLE_NAME`` in ``DYNAMODB_REGION`` (else ``REGION``)."""
        client = client_for(
            settings.table_region,
            connect_timeout=settings.dynamodb_connect_timeout_seconds,
            read_timeout=settings.dynamodb_read_timeout_seconds,
            attempts=settings.dynamodb_max_attempts,
        )
        return cls(
            client,
            settings.inference_endpoints_table_name,
            settings.status_heartbeat_seconds,
            settings.dynamodb_scan_segments,
        )

    # ---- table ----

    def create_table(self, wait: bool = True) -> bool:
        """Create the table with GCO's schema (PK ``endpoint_name`` S, on-demand). False if it exists."""
        try:
            with self.table.call("CreateTable"):
                self.client.create_table(
                    TableName=self.table_name,
                    AttributeDefinitions=[{"AttributeName": "endpoint_name", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "endpoint_name", "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
        except StoreError as exc:
            if exc.code == "ResourceInUseException":
                return False
            raise
        if wait:
            with self.table.call("DescribeTable"):
                self.client.get_waiter("table_exists").wait(
                    TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
                )
        return True

    # ---- reads ----

    def scan_items(self, target_region: str | None = None) -> Iterator[dict[str, Any]]:
        """Every item (Decimals converted), in no particular order; only those targeting
        ``target_region`` if given. Unlike GCO's store this follows ``LastEvaluatedKey`` to the end. A
        large table is read as a parallel Scan: ``DYNAMODB_SCAN_SEGMENTS`` segments, or (0) as many as
        the size of this process's previous full Scan calls for (``scan_segments_for``)."""
        params: dict[str, Any] = {"TableName": self.table_name}
        if target_region is not None:
            params["FilterExpression"] = "contains(target_regions, :region)"
            params["ExpressionAttributeValues"] = {":region": {"S": target_region}}
        segments = self.segments or scan_segments_for(self.last_scan_bytes)
        received = 0
        for page in scan_pages(self.table, params, segments):
            received += page_bytes(page)
            with gcpause.paused():
                items = [decode_item(raw) for raw in page.get("Items", [])]
            yield from items
        if target_region is None:
            self.last_scan_bytes = received

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
        with self.table.call("GetItem"):
            response = self.client.get_item(
                TableName=self.table_name, Key=self.table.key(name), ConsistentRead=True
            )
        raw = response.get("Item")
        return decode_item(raw) if raw else None

    def get_items(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Several raw items, read consistently, ``BATCH_GET_KEYS`` to a ``BatchGetItem`` call: name ->
        item, or None for a name the table does not have. A name DynamoDB left unprocessed (throttled)
        is absent from the answer: the caller reads it alone (``get_item``, with the client's retries)."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            chunk = wanted[start : start + BATCH_GET_KEYS]
            keys = [self.table.key(name) for name in chunk]
            with self.table.call("BatchGetItem"):
                response = self.client.batch_get_item(
                    RequestItems={self.table_name: {"Keys": keys, "ConsistentRead": True}}
                )
            for raw in response.get("Responses", {}).get(self.table_name, []):
                item = decode_item(raw)
                found[str(item.get("endpoint_name"))] = item
            unprocessed: Mapping[str, Any] = response.get("UnprocessedKeys") or {}
            left = (unprocessed.get(self.table_name) or {}).get("Keys") or []
            unread = {str(key["endpoint_name"]["S"]) for key in left}
            found.update({name: None for name in chunk if name not in found and name not in unread})
        return found

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
            self.table.write(
                "PutItem",
                lambda: self.client.put_item(
                    TableName=self.table_name,
                    Item=encode(endpoint.to_item())["M"],
                    ConditionExpression="attribute_not_exists(endpoint_name)",
                ),
            )
        except ConditionFailed:
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
        return self.table.update(
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
            values[f":s{i}"] = encode(value)
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
            values[":read_updated_at"] = encode(_as_stored(read_item["updated_at"]))
        else:
            condition = "attribute_exists(endpoint_name) AND attribute_not_exists(updated_at)"
        return self.table.update(name, expression, condition, values, names)

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
        values = {":s": encode(entry)}
        try:
            return self.table.update(
                name,
                "SET region_status.#r = :s",
                "attribute_exists(endpoint_name)",
                values,
                names={"#r": region},
            )
        except StoreError as exc:
            if not is_missing_map(exc):
                raise
        # The record has no region_status map at all (not written by GCO's store): create it.
        return self.table.update(
            name,
            "SET region_status = :m",
            "attribute_exists(endpoint_name) AND attribute_not_exists(region_status)",
            {":m": encode({region: entry})},
        )

    def remove_region_status(self, name: str, region: str) -> bool:
        """Remove ``region_status.<region>`` (a region no longer targeted). Returns whether it was there."""
        return self.table.update(
            name,
            "REMOVE region_status.#r",
            "attribute_exists(region_status.#r)",
            {},
            names={"#r": region},
        )

    def promote_if_deploying(
        self, name: str, updated_at: str | None = None, region: str | None = None
    ) -> bool:
        """``deploying`` → ``running`` (bumping ``updated_at``, as a desired-state change), only if the
        record is still ``deploying`` and, when ``updated_at`` is given, still the version the regions
        reported ``running`` on (an edit meanwhile needs its own rollout). ``region``: the promoting
        region's report moves to the new ``updated_at`` in the same write (it is about that version:
        no second write just to say so). Returns whether it wrote."""
        if updated_at is None:
            return self.update_desired_state(name, RUNNING, expected_state=DEPLOYING)
        unchanged, values = updated_at_is(updated_at)
        values.update({":s": {"S": RUNNING}, ":u": {"S": iso_now()}, ":expected": {"S": DEPLOYING}})
        expression = "SET desired_state = :s, updated_at = :u"
        condition = f"attribute_exists(endpoint_name) AND desired_state = :expected AND {unchanged}"
        if region is None:
            return self.table.update(name, expression, condition, values)
        expression += ", region_status.#r.observed_updated_at = :u"
        condition += " AND attribute_exists(region_status.#r)"
        return self.table.update(name, expression, condition, values, names={"#r": region})

    def report_running_and_promote(
        self,
        name: str,
        region: str,
        status: RegionStatus,
        updated_at: str | None,
        now: datetime | None = None,
    ) -> bool:
        """This region's ``running`` report and the promotion ``deploying`` → ``running`` it completes,
        in one write: ``promote_if_deploying``'s conditions, the report about the new ``updated_at``.
        False when a condition did not hold or the record has no ``region_status`` map: nothing was
        written, and the caller reports as usual (a separate status write, then the promotion)."""
        moment = now or datetime.now(UTC)
        unchanged, values = updated_at_is(updated_at)
        bumped = iso_now()
        entry = status.model_copy(update={"last_sync": iso_now(moment), "observed_updated_at": bumped})
        values.update(
            {
                ":s": {"S": RUNNING},
                ":u": {"S": bumped},
                ":expected": {"S": DEPLOYING},
                ":r": encode(entry.to_dict()),
            }
        )
        expression = "SET desired_state = :s, updated_at = :u, region_status.#r = :r"
        condition = f"attribute_exists(endpoint_name) AND desired_state = :expected AND {unchanged}"
        try:
            return self.table.update(name, expression, condition, values, names={"#r": region})
        except StoreError as exc:
            if not is_missing_map(exc):
                raise
        return False

    def delete_if_unchanged(self, name: str, updated_at: str | None) -> bool:
        """Purge: delete the record only if it is still ``deleted`` and ``updated_at`` is the one read,
        so a record re-created under the same name survives. Returns whether it deleted."""
        unchanged, values = updated_at_is(updated_at)
        values[":deleted"] = {"S": DELETED}
        condition = f"desired_state = :deleted AND {unchanged}"
        try:
            self.table.write(
                "DeleteItem",
                lambda: self.client.delete_item(
                    TableName=self.table_name,
                    Key=self.table.key(name),
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                ),
            )
        except ConditionFailed:
            return False
        return True

    # ---- plumbing ----

    def _write_if_unchanged(
        self, name: str, updated_at: str | None, updated: Endpoint, fields: list[str]
    ) -> bool:
        item = updated.to_item()
        names = {f"#f{i}": field for i, field in enumerate(fields)}
        values = {f":v{i}": encode(item[field]) for i, field in enumerate(fields)}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        unchanged, unchanged_values = updated_at_is(updated_at)
        values.update(unchanged_values)
        return self.table.update(
            name, expression, f"attribute_exists(endpoint_name) AND {unchanged}", values, names
        )


def _as_stored(value: Any) -> Any:
    """A value read from the table, to compare with what is stored: ``encode`` writes a float as a
    string (as GCO does), so a number read back is passed as a Decimal."""
    return Decimal(repr(value)) if isinstance(value, float) else value


def later_than(previous: object) -> str:
    """A fresh ``updated_at`` that differs from ``previous`` (whatever it was) even within one clock tick."""
    return _later_than(previous if isinstance(previous, str) else None)


def _later_than(previous: str | None) -> str:
    """A fresh ``updated_at`` that differs from ``previous`` even within one clock tick."""
    stamp = iso_now()
    if stamp == previous:
        stamp = iso_now(datetime.now(UTC) + timedelta(microseconds=1))
    return stamp
