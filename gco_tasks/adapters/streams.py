"""The table's DynamoDB Stream as a region reads it: new change records since the last read, one batch at a
time, its position per shard kept in the region's Redis.

Where it stands in the flow: under ``streamwatch`` (the ``stream_poll`` task, sent by beat every
``STREAM_POLL_SECONDS`` when that is set). More in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gco_tasks.adapters.dynamo_client import Table, decode_item
from gco_tasks.core.conventions import RegionKeys
from gco_tasks.core.errors import InfrastructureError, TransientError

if TYPE_CHECKING:
    from gco_tasks.adapters.store import EndpointStore

#: GetRecords calls per shard and batch at most (1,000 records each): the rest waits for the next poll.
MAX_READS_PER_SHARD = 10
#: The field of the positions hash that says this region's reader has read the stream before.
STARTED = "~started"


class StreamStateError(TransientError):
    """The region's Redis did not answer while reading or saving the stream's positions."""


class NoStreamError(InfrastructureError):
    """STREAM_POLL_SECONDS is set but the table has no stream: enable one (NEW_AND_OLD_IMAGES)."""


@dataclass(frozen=True)
class StreamChange:
    """One change of one record: INSERT, MODIFY or REMOVE, with its images when the stream has them."""

    name: str
    event: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class StreamReader:
    """Reads the table's stream for one region (docs/architecture.md)."""

    def __init__(self, table: Table, streams: Any, client: redis.Redis, region: str) -> None:
        self.table, self.streams, self.redis = table, streams, client
        self.keys = RegionKeys(region)

    @classmethod
    def from_store(cls, store: EndpointStore, client: redis.Redis, region: str) -> StreamReader:
        """A reader on ``store``'s table; the Streams client goes where the DynamoDB client goes when that
        is a local endpoint (moto, DynamoDB Local serve both), else to the region's AWS endpoint."""
        endpoint = store.client.meta.endpoint_url
        local = endpoint if "amazonaws.com" not in endpoint else None
        streams = boto3.client(
            "dynamodbstreams", region_name=store.client.meta.region_name, endpoint_url=local
        )
        return cls(store.table, streams, client, region)

    @contextlib.contextmanager
    def batch(self) -> Iterator[list[StreamChange] | None]:
        """The changes since the last batch (None while another reader holds the lock); positions are
        saved when the block ends without an exception."""
        with _redis("stream lock"):
            lock = self.redis.lock(self.keys.stream_lock, timeout=60, blocking=False)
            acquired = lock.acquire()
        if not acquired:
            yield None
            return
        try:
            positions = self._positions()
            changes, moved = self._read(self._stream_arn(), positions)
            yield changes
            if moved:
                mapping: dict[Any, Any] = dict(moved)
                with _redis("save stream positions"):
                    self.redis.hset(self.keys.stream_positions, mapping=mapping)
        finally:
            with contextlib.suppress(RedisError):
                lock.release()

    def _positions(self) -> dict[str, str]:
        with _redis("read stream positions"):
            raw = self.redis.hgetall(self.keys.stream_positions)
        return {_text(k): _text(v) for k, v in raw.items()}

    def _stream_arn(self) -> str:
        with self.table.call("DescribeTable"):
            arn = self.table.client.describe_table(TableName=self.table.name)["Table"].get("LatestStreamArn")
        if not arn:
            raise NoStreamError(
                f"STREAM_POLL_SECONDS is set but table {self.table.name} has no stream: enable DynamoDB "
                "Streams on it (NEW_AND_OLD_IMAGES), or set STREAM_POLL_SECONDS=0"
            )
        return str(arn)

    def _read(self, arn: str, positions: dict[str, str]) -> tuple[list[StreamChange], dict[str, str]]:
        """Every shard from its position (a shard without one from its start): the changes and the new
        positions. The region's first read only moves the positions to the stream's end and reports
        nothing: the periodic fan-out has covered the past."""
        with self.table.call("DescribeStream"):
            shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        changes: list[StreamChange] = []
        moved: dict[str, str] = {} if STARTED in positions else {STARTED: "1"}
        for shard in shards:
            shard_id = shard["ShardId"]
            start: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
            if shard_id in positions:
                start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": positions[shard_id]}
            records = self._shard_records(arn, shard_id, start)
            if STARTED in positions:
                changes += [_change(record) for record in records]
            if records:
                moved[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return changes, moved

    def _shard_records(self, arn: str, shard_id: str, start: dict[str, str]) -> list[dict[str, Any]]:
        with self.table.call("GetShardIterator"):
            iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **start).get(
                "ShardIterator"
            )
        records: list[dict[str, Any]] = []
        for _ in range(MAX_READS_PER_SHARD):
            if not iterator:
                break
            with self.table.call("GetRecords"):
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            records += page.get("Records", [])
            iterator = page.get("NextShardIterator")
            if not page.get("Records"):
                break
        return records


def _change(record: dict[str, Any]) -> StreamChange:
    data = record.get("dynamodb") or {}
    keys = decode_item(data.get("Keys") or {})
    old, new = data.get("OldImage"), data.get("NewImage")
    return StreamChange(
        name=str(keys.get("endpoint_name", "")),
        event=str(record.get("eventName", "")),
        old=decode_item(old) if old else None,
        new=decode_item(new) if new else None,
    )


@contextlib.contextmanager
def _redis(what: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StreamStateError(f"redis {what}: {type(exc).__name__}: {exc}") from exc
    except RedisError as exc:
        raise InfrastructureError(f"redis {what}: {type(exc).__name__}: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
