"""Fixtures for the fleet's integration tests (helpers in ``harness.py``).

``fleet`` is wired to ``cluster``: each fleet test runs on the stand-in and on the real control plane
(see ``tests/clusters.py``; ``standin_only`` / ``real_only`` markers narrow that).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import DynamoWrites, make_fleet


@pytest.fixture()
def fleet(redis_url: str, dynamodb_url: str, cluster: Cluster) -> Iterator[Fleet]:
    built = make_fleet(redis_url, cluster.api_client)
    built.store.create_table()
    yield built
    built.state.client.close()


@pytest.fixture()
def dynamo_writes(fleet: Fleet) -> DynamoWrites:
    return DynamoWrites(fleet.store)
