"""Nothing expires silently: a reconcile message that waited in the queue past its expiry reaches a real
Celery worker (the in-process worker on a private redis-server), which drops it unrun and says so: Celery
sends ``task_revoked`` with ``expired=True``, and the fleet's observability counts
``gco_expired_messages_total`` and logs a warning naming the endpoint. The endpoint is not lost: its
pending mark expires with the message, so the next fan-out sends it again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.flows.fanout import fan_out
from gco_tasks.worker import tasks
from gco_tasks.worker.app import app
from gco_tasks.worker.fleet import Fleet
from gco_tasks.worker.process import current_settings, use_fleet

from .harness import REGION

pytestmark = pytest.mark.standin_only  # the worker's queue, not the API server, is under test


@pytest.fixture()
def observed_app(fleet: Fleet, redis_url: str, fresh_metrics: Any) -> Iterator[Any]:
    """The app as a worker runs it (its observability is installed where the app is created), on this
    test's Redis and fleet, counting into a fresh registry."""
    saved = {key: app.conf.get(key) for key in ("broker_url", "result_backend", "redbeat_redis_url")}
    app.conf.update(broker_url=redis_url, result_backend=redis_url, redbeat_redis_url=redis_url)
    use_fleet(fleet)
    try:
        yield fresh_metrics
    finally:
        use_fleet(None)
        app.conf.update(saved)


def test_an_expired_message_is_counted_logged_and_sent_again(
    fleet: Fleet, observed_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.store.create(Endpoint.new("late", parse_spec({"image": "nginx:1.27"}), [REGION]))
    sent: list[str] = []
    assert fan_out(fleet, lambda name, _: sent.append(name)).sent == 1  # marked pending
    past = datetime.now(UTC) - timedelta(seconds=5)
    tasks.reconcile_endpoint.apply_async(  # as the fan-out sends it: no result to wait for
        args=["late"], queue=fleet.settings.queue, expires=past, ignore_result=True
    )
    caplog.set_level(logging.WARNING, logger="gco_tasks.worker.exporter")
    labels = {"region": current_settings().region, "task": "gco_tasks.reconcile_endpoint"}
    queues = [fleet.settings.queue]
    with start_worker(app, pool="threads", concurrency=1, queues=queues, perform_ping_check=False):
        deadline = time.monotonic() + 30
        while not observed_app.registry.get_sample_value("gco_expired_messages_total", labels):
            assert time.monotonic() < deadline, "the expired message was not reported"
            time.sleep(0.1)
    assert observed_app.registry.get_sample_value("gco_expired_messages_total", labels) == 1
    assert any("expired" in r.getMessage() and "late" in r.getMessage() for r in caplog.records)
    assert (fleet.store.get_item("late") or {}).get("region_status", {}) == {}, "it did not run"
    fleet.state.client.delete(*fleet.state.client.keys("gco:*:pending:*"))  # the mark's TTL, elapsed
    assert fan_out(fleet, lambda name, _: sent.append(name)).sent == 1
    assert sent == ["late", "late"]
