"""``dynamo.decode_item``'s one-pass decoding (issue 26: the Scan of 10,000 records is decoded every
cycle) gives exactly what boto3's ``TypeDeserializer`` and ``fields.from_dynamo`` give."""

from __future__ import annotations

from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from gco_tasks.adapters.dynamo_client import decode_item
from gco_tasks.core.fields import from_dynamo

ITEMS: list[dict[str, Any]] = [
    {"endpoint_name": {"S": "demo"}, "spec": {"M": {"replicas": {"N": "2"}, "gpu_count": {"N": "0"}}}},
    {"n": {"L": [{"N": "-0"}, {"N": "007"}, {"N": "1.5"}, {"N": "2.0"}, {"N": "1E+2"}, {"N": "-12"}]}},
    {"big": {"N": "9" * 38}, "flag": {"BOOL": False}, "none": {"NULL": True}, "text": {"S": "1"}},
    {"sets": {"M": {"ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}}}, "bin": {"B": b"\x00\x01"}},
    {"deep": {"M": {"a": {"L": [{"M": {"b": {"L": [{"N": "3"}, {"S": ""}]}}}]}}}, "empty": {"M": {}}},
]


@pytest.mark.parametrize("raw", ITEMS)
def test_decoding_matches_boto3_and_from_dynamo(raw: dict[str, Any]) -> None:
    expected = from_dynamo({key: TypeDeserializer().deserialize(value) for key, value in raw.items()})
    found = decode_item(raw)
    assert found == expected
    assert repr(found) == repr(expected), "the same types too (1 is not 1.0, True is not 1)"


def test_an_unknown_type_is_refused_as_boto3_refuses_it() -> None:
    with pytest.raises(TypeError):
        decode_item({"odd": {"X": "1"}})
