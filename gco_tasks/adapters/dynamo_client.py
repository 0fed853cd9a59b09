"""DynamoDB plumbing under the store: the boto3 client, the item codec, and botocore's exceptions translated
into ``gco_tasks.core.errors``.

Where it stands in the flow: the lowest layer of the desired state's edge. More in docs/architecture.md.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from gco_tasks.adapters import gcpause
from gco_tasks.core.errors import GcoError, InfrastructureError, TransientError
from gco_tasks.core.fields import from_dynamo, to_dynamo

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

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
#: A Scan page holds at most 1 MB; ``scan_segments_for`` gives each parallel segment about this much.
SCAN_BYTES_PER_SEGMENT: Final = 2 * 1024 * 1024
MAX_SCAN_SEGMENTS: Final = 8


class StoreError(GcoError, RuntimeError):
    """DynamoDB refused or failed a call; the message says which call and why. ``code`` is DynamoDB's
    error code when it gave one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientStoreError(StoreError, TransientError):
    """Throttling, a 5xx or a connection failure: retrying later may succeed."""


class StoreUnavailableError(StoreError, InfrastructureError):
    """DynamoDB refused the call (no table, no permission, a malformed request): retrying will not help."""


class ConditionFailed(Exception):
    """A conditional write's condition did not hold (nothing was written)."""


def client_for(
    region: str, connect_timeout: float = 2.0, read_timeout: float = 5.0, attempts: int = 3
) -> DynamoDBClient:
    """A DynamoDB client for ``region``; ``AWS_ENDPOINT_URL_DYNAMODB`` (boto3's own variable) points it
    at moto or DynamoDB Local.

    Every bound is explicit, so a DynamoDB that does not answer cannot hold a worker for long: each
    attempt connects within ``connect_timeout`` and reads each response within ``read_timeout``, and
    botocore's standard retry mode makes at most ``attempts`` attempts in all (throttling, 5xx and
    dropped connections are retried, with jittered exponential backoff of at most 1 s, then 2 s). With
    the defaults one call gives up after 3 x (2 + 5) + 3 = 24 s (``Settings.dynamodb_call_bound_seconds``);
    the task then retries the whole reconcile with its own backoff, or the cycle is skipped."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
    )
    return boto3.client("dynamodb", region_name=region, config=config)


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def encode(value: Any) -> dict[str, Any]:
    """Plain Python -> a DynamoDB attribute value, as GCO's store writes it (floats as strings)."""
    return _serializer.serialize(to_dynamo(value))  # type: ignore[return-value]


def decode_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A raw DynamoDB item -> plain Python (numbers as int or float, as ``fields.from_dynamo`` makes them):
    one pass over the wire format, the same result as boto3's ``TypeDeserializer`` then ``from_dynamo``
    (which it falls back to for anything but strings, plain numbers, maps, lists, booleans and null)."""
    return {key: _decode(value) for key, value in raw.items()}


def _decode(value: Mapping[str, Any]) -> Any:
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "S":
            return inner
        if tag == "M":
            return {key: _decode(each) for key, each in inner.items()}
        if tag == "L":
            return [_decode(each) for each in inner]
        if tag == "N" and _PLAIN_INT.fullmatch(inner):
            return int(inner)
        if tag == "BOOL" and isinstance(inner, bool):
            return inner
        if tag == "NULL" and inner is True:
            return None
    return from_dynamo(_deserializer.deserialize(value))  # type: ignore[arg-type]


#: A number DynamoDB hands over as a plain integer (38 digits at most, its precision): ``int`` reads it
#: exactly as ``Decimal`` then ``from_dynamo`` would.
_PLAIN_INT = re.compile(r"-?[0-9]{1,38}")


class Table:
    """Calls on one table, each translated; the store's building blocks."""

    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    def key(self, endpoint: str) -> dict[str, Any]:
        return {"endpoint_name": {"S": endpoint}}

    @contextmanager
    def call(self, operation: str) -> Iterator[None]:
        """Translate botocore failures raised inside into ``StoreError``s."""
        try:
            yield
        except ClientError as exc:
            raise _translate(operation, self.name, exc) from exc
        except (ConnectionError, HTTPClientError) as exc:
            raise TransientStoreError(f"{operation} on {self.name}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{operation} on {self.name}: {exc}") from exc

    def write(self, operation: str, call: Callable[[], object]) -> None:
        """Run a conditional write; a failed condition raises ``ConditionFailed``."""
        try:
            with self.call(operation):
                call()
        except StoreError as exc:
            if exc.code == _CONDITION_FAILED:
                raise ConditionFailed from None
            raise

    def update(
        self,
        endpoint: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        """A conditional UpdateItem; False when the condition did not hold."""
        params: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(endpoint),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
        }
        if values:
            params["ExpressionAttributeValues"] = values
        if names:
            params["ExpressionAttributeNames"] = names
        try:
            self.write("UpdateItem", lambda: self.client.update_item(**params))
        except ConditionFailed:
            return False
        return True


def scan_segments_for(table_bytes: int) -> int:
    """How many parallel Scan segments suit a table of this size: one per ``SCAN_BYTES_PER_SEGMENT``
    (about two 1 MB pages each, read one after the other), between 1 and ``MAX_SCAN_SEGMENTS``."""
    return max(1, min(MAX_SCAN_SEGMENTS, math.ceil(table_bytes / SCAN_BYTES_PER_SEGMENT)))


def page_bytes(page: Mapping[str, Any]) -> int:
    """The size of one Scan response as received (its Content-Length; a full page, 1 MB, if absent)."""
    headers = (page.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    try:
        return int(headers["content-length"])
    except (KeyError, TypeError, ValueError):
        return 1024 * 1024


def scan_pages(table: Table, params: Mapping[str, Any], segments: int) -> Iterator[dict[str, Any]]:
    """Every page of a Scan (``LastEvaluatedKey`` followed to the end). With ``segments`` > 1 a parallel
    Scan: ``TotalSegments`` threads, each paginating its own segment on the shared client (boto3
    clients are thread-safe), every page yielded as soon as it is read, and a thread waits while
    ``segments`` pages are read and not yet taken: the caller holds a few pages, never the table."""
    if segments <= 1:
        yield from _segment_pages(table, dict(params))
        return
    pages: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=segments)  # room for every DONE
    stop = threading.Event()

    def read(segment: int) -> None:
        try:
            for page in _segment_pages(table, {**params, "Segment": segment, "TotalSegments": segments}):
                while not stop.is_set():
                    try:
                        pages.put((_PAGE, page), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pages.put((_DONE, None))
        except BaseException as exc:  # handed to the reader, raised there
            pages.put((_FAILED, exc))

    with ThreadPoolExecutor(segments, thread_name_prefix="scan") as pool:
        for segment in range(segments):
            pool.submit(read, segment)
        try:
            done = 0
            while done < segments:
                what, value = pages.get()
                if what == _FAILED:
                    raise value
                if what == _DONE:
                    done += 1
                else:
                    yield value
        finally:
            stop.set()
            while not pages.empty():  # unblock a thread still putting its last page
                pages.get_nowait()


_PAGE, _DONE, _FAILED = 0, 1, 2


def _segment_pages(table: Table, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pages = iter(table.client.get_paginator("scan").paginate(**params))
    while True:
        with table.call("Scan"), gcpause.paused():  # botocore parses a 1 MB page here (see gcpause)
            page = next(pages, None)
        if page is None:
            return
        yield dict(page)


def updated_at_is(updated_at: str | None) -> tuple[str, dict[str, Any]]:
    """The condition "``updated_at`` is still the one read" (absent when it was absent), with its value."""
    if updated_at is None:
        return "attribute_not_exists(updated_at)", {}
    return "updated_at = :read_updated_at", {":read_updated_at": {"S": updated_at}}


def is_missing_map(exc: StoreError) -> bool:
    """The update named a path inside a map the item does not have (e.g. no ``region_status``)."""
    return exc.code == "ValidationException" and "document path" in str(exc).lower()


def _translate(operation: str, table: str, exc: ClientError) -> StoreError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = exc.response.get("Error", {}).get("Message", str(exc))
    text = f"{operation} on {table}: {code}: {message}"
    if code == "ResourceNotFoundException":
        text += (
            " (does the table exist in this region? `gco-tasks endpoints create-table` creates it locally)"
        )
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientStoreError(text, code)
    return StoreUnavailableError(text, code)
