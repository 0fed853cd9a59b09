"""The exporter's parts in this process: queue depth from the lists kombu really writes (priority
sub-queues and a key prefix included) on a private redis-server, nothing and no password when Redis is
unreachable, the multiprocess directory's cleaning and reaping on real files and pids, the HTTP exporter
on a free port (disabled by 0, a taken port logged, not raised), and ``install`` / ``uninstall`` leaving
Celery's signals as they were."""

from __future__ import annotations

import logging
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery, signals
from prometheus_client import CollectorRegistry, generate_latest

from gco_sandbox.services import free_port
from gco_tasks.adapters import logging_setup
from gco_tasks.adapters.metrics import FleetMetrics
from gco_tasks.core.config import load_settings
from gco_tasks.worker import exporter
from gco_tasks.worker.exporter import (
    Exporter,
    QueueDepthCollector,
    SettingsCollector,
    clean_multiproc_dir,
    exporter_registry,
    queue_keys,
    reap_dead_processes,
    scrape_collectors,
)

REGION = "us-east-1"
QUEUE = f"gco.{REGION}"


def depth_of(collector: Any) -> dict[str, float]:
    return {s.labels["queue"]: s.value for family in collector.collect() for s in family.samples}


@pytest.fixture()
def producer(redis_url: str) -> Iterator[Celery]:
    """A Celery app that only publishes (no worker consumes its queue)."""
    app = Celery("producer", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)
    yield app
    app.close()


# --------------------------------------------------------------------------- queue depth


def test_queue_keys_follow_kombus_priority_sub_queues() -> None:
    assert queue_keys(QUEUE) == [QUEUE, f"{QUEUE}\x06\x163", f"{QUEUE}\x06\x166", f"{QUEUE}\x06\x169"]
    assert queue_keys("q", sep=":", priority_steps=[0, 5], prefix="p/") == ["p/q", "p/q:5"]
    assert queue_keys("q", priority_steps=[4]) == ["q", "q\x06\x164"]


def test_queue_depth_counts_every_priority(redis_url: str, producer: Celery) -> None:
    for priority in (0, 0, 3, 5, 9, 9, 9):
        producer.send_task("gco_tasks.reconcile_endpoint", args=["x"], queue=QUEUE, priority=priority)
    client = redis.Redis.from_url(redis_url)
    assert {key.decode() for key in client.keys(f"{QUEUE}*")} > {QUEUE}, "priority sub-queues exist"
    settings = load_settings({"REGION": REGION, "REDIS_URL": redis_url})
    queue_depth, interval = scrape_collectors(settings, {})
    assert depth_of(queue_depth) == {QUEUE: 7}
    assert [s.value for f in interval.collect() for s in f.samples] == [15.0]
    client.close()


def test_queue_depth_under_a_global_key_prefix(redis_url: str, producer: Celery) -> None:
    options = {"global_keyprefix": "fleet:"}
    producer.conf.broker_transport_options = options
    producer.send_task("gco_tasks.fan_out", queue=QUEUE)
    producer.send_task("gco_tasks.fan_out", queue=QUEUE, priority=6)
    settings = load_settings({"REGION": REGION, "REDIS_URL": redis_url})
    assert depth_of(scrape_collectors(settings, options)[0]) == {QUEUE: 2}
    assert depth_of(scrape_collectors(settings, {})[0]) == {QUEUE: 0}, "the prefix matters"


def test_unreachable_redis_yields_no_series_and_shows_no_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    settings = load_settings({"REGION": REGION, "REDIS_URL": url})
    registry = exporter_registry(scrape_collectors(settings, {}), None)
    with caplog.at_level(logging.DEBUG, logger="gco_tasks.worker.exporter"):
        text = generate_latest(registry).decode()
    assert "gco_queue_depth{" not in text
    assert "gco_reconcile_interval_seconds" in text
    assert "queue depth unavailable: ConnectionError" in caplog.text
    assert "s3cret" not in text and "s3cret" not in caplog.text
    obs = exporter.Observability(Celery("x", set_as_current=False), settings)
    assert "s3cret" not in repr(obs) and "s3cret" not in repr(obs.on_worker_ready)


def test_collectors_describe_nothing_so_registering_them_costs_no_scrape() -> None:
    calls: list[int] = []

    def connect() -> redis.Redis:
        calls.append(1)
        raise AssertionError("no connection at registration")

    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(connect, REGION, [QUEUE]))
    registry.register(SettingsCollector(REGION, 15))
    assert calls == []


# --------------------------------------------------------------------------- the multiprocess directory


def test_clean_removes_a_previous_runs_value_files_only(tmp_path: Path) -> None:
    directory = tmp_path / "new"
    assert clean_multiproc_dir(directory) == 0 and directory.is_dir()
    for name in ("counter_12.db", "histogram_12.db", "gauge_livesum_12.db", "notes.txt"):
        (directory / name).write_bytes(b"x")
    assert clean_multiproc_dir(directory) == 3
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_reaping_drops_live_gauges_of_dead_processes_and_keeps_their_counts(tmp_path: Path) -> None:
    import os

    dead, alive = dead_pid(), os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_mostrecent_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"gauge_livesum_{os.getppid()}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert reap_dead_processes(tmp_path) == [dead]
    left = {p.name for p in tmp_path.iterdir()}
    assert left == set(names) - {f"gauge_livesum_{dead}.db", f"gauge_liveall_{dead}.db"}
    assert reap_dead_processes(tmp_path) == []


# --------------------------------------------------------------------------- the HTTP exporter


def test_exporter_serves_the_fleets_registry_and_stops(fresh_metrics: FleetMetrics) -> None:
    from gco_tasks.adapters import metrics

    metrics.record_reconcile(REGION, "applied", 0.1)
    port = free_port()
    exporter = Exporter(exporter_registry([SettingsCollector(REGION, 15)], None), port, "127.0.0.1")
    assert exporter.start() and exporter.start(), "a second start is a no-op"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'gco_reconcile_total{region="us-east-1",result="applied"} 1.0' in text
        assert 'gco_reconcile_interval_seconds{region="us-east-1"} 15.0' in text
        assert "_created" not in text
    finally:
        exporter.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_port_zero_disables_and_a_taken_port_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert Exporter(CollectorRegistry(), 0).start() is False
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = Exporter(CollectorRegistry(), port, "127.0.0.1")
        assert exporter.start() is False
    assert f"metrics exporter cannot listen on port {port}" in caplog.text


# --------------------------------------------------------------------------- install


RECEIVER_SIGNALS = (
    signals.worker_init,
    signals.worker_ready,
    signals.worker_shutdown,
    signals.worker_process_init,
    signals.worker_process_shutdown,
    signals.beat_init,
    signals.task_prerun,
    signals.task_postrun,
    signals.task_revoked,
    signals.after_task_publish,
    signals.after_setup_logger,
    signals.after_setup_task_logger,
)


def test_install_connects_handlers_that_uninstall_removes(
    fresh_metrics: FleetMetrics, tmp_path: Path
) -> None:
    from gco_tasks.adapters import metrics

    before = [len(signal.receivers or []) for signal in RECEIVER_SIGNALS]
    region_before = metrics.set_default_region("before")
    app = Celery("installed", set_as_current=False)
    settings = load_settings({"REGION": REGION, "METRICS_PORT": "0"})
    installed = exporter.install(app, settings, environ={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        assert [len(s.receivers or []) for s in RECEIVER_SIGNALS] == [n + 1 for n in before]
        (tmp_path / "counter_1.db").write_bytes(b"x")

        class Task:
            name = "gco_tasks.reconcile_endpoint"

        Task.app = app  # type: ignore[attr-defined]
        signals.worker_init.send(sender=type("Worker", (), {"app": app})())
        assert not (tmp_path / "counter_1.db").exists()
        assert installed.observability.role == "worker"

        signals.task_prerun.send(sender=Task, task_id="t-1", task=Task, args=[], kwargs={})
        assert logging_setup.current_context() == {"task_id": "t-1", "region": REGION}
        in_progress = {"region": REGION, "task": Task.name}
        assert fresh_metrics.registry.get_sample_value("gco_tasks_in_progress", in_progress) == 1
        signals.task_postrun.send(sender=Task, task_id="t-1", task=Task, args=[], kwargs={}, retval=None)
        assert logging_setup.current_context() == {}
        assert fresh_metrics.registry.get_sample_value("gco_tasks_in_progress", in_progress) == 0

        signals.task_revoked.send(sender=Task, request=None, terminated=False, signum=None, expired=True)
        signals.after_task_publish.send(sender="gco_tasks.fan_out", headers={"task": "gco_tasks.fan_out"})
        expired = fresh_metrics.registry.get_sample_value("gco_expired_messages_total", in_progress)
        assert expired == 1
        beat = {"region": REGION, "task": "gco_tasks.fan_out"}
        assert fresh_metrics.registry.get_sample_value("gco_beat_sent_total", beat) is None, "not beat"

        other = Celery("another", set_as_current=False)
        signals.worker_init.send(sender=type("Worker", (), {"app": other})())
        assert installed.observability.role == "worker", "another app's signals are not ours"
    finally:
        installed.uninstall()
    assert [len(signal.receivers or []) for signal in RECEIVER_SIGNALS] == before
    assert metrics.set_default_region(region_before) == "before"


def test_settings_read_when_a_process_starts_and_a_prefork_worker_without_its_directory_warns(
    fresh_metrics: FleetMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    """The app module passes ``current_settings``: nothing is read at install; the region is the
    process's once ``worker_init`` (in the parent, before the pool forks) reads them."""
    from gco_tasks.adapters import metrics

    region_before = metrics.set_default_region("before")
    reads: list[str] = []

    def settings() -> Any:
        reads.append("read")
        return load_settings({"REGION": "eu-west-1", "METRICS_PORT": "9808"})

    app = Celery("lazy", set_as_current=False)
    installed = exporter.install(app, settings, environ={})
    try:
        assert reads == [] and metrics.default_region() == "before"
        prefork = type(
            "Worker", (), {"app": app, "pool_cls": "<class 'celery.concurrency.prefork.TaskPool'>"}
        )
        with caplog.at_level(logging.WARNING, logger="gco_tasks.worker.exporter"):
            signals.worker_init.send(sender=prefork())
        assert metrics.default_region() == "eu-west-1" and reads
        (warning,) = [r.getMessage() for r in caplog.records if r.name == "gco_tasks.worker.exporter"]
        assert warning.startswith("PROMETHEUS_MULTIPROC_DIR is not set: this prefork worker's /metrics")
        caplog.clear()
        threads = type("Worker", (), {"app": app, "pool_cls": "<class 'celery.concurrency.thread.TaskPool'>"})
        signals.worker_init.send(sender=threads())
        assert not [r for r in caplog.records if r.name == "gco_tasks.worker.exporter"], (
            "one process: no files"
        )
    finally:
        installed.uninstall()
    assert metrics.set_default_region(region_before) == "before"
