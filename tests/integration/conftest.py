"""Fixtures for the fleet's integration tests (helpers in ``harness.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gco_tasks.fleet import Fleet

from .harness import DynamoWrites, make_fleet


@pytest.fixture()
def fleet(redis_url: str, dynamodb_url: str, apiserver: Any, kube_client: Any) -> Iterator[Fleet]:
    built = make_fleet(redis_url, kube_client)
    built.store.create_table()
    yield built
    built.state.client.close()


@pytest.fixture()
def dynamo_writes(fleet: Fleet) -> DynamoWrites:
    return DynamoWrites(fleet.store)
