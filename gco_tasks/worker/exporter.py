"""What a worker or beat process shows of itself: the Prometheus exporter (in the worker's parent), the
series computed at scrape time, and the Celery signal handlers that record task metrics and set up logs.

Where it stands in the flow: around the Celery processes; ``app`` calls ``install`` once at import.
Which signal does what, and why the exporter lives in the parent: docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import redis
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from gco_tasks.adapters import logging_setup, metrics
from gco_tasks.core.config import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: kombu's Redis transport: the separator and priority steps of its priority sub-queues (defaults).
KOMBU_SEP: Final = "\x06\x16"
KOMBU_PRIORITY_STEPS: Final = (0, 3, 6, 9)
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


# --------------------------------------------------------------------------- the multiprocess directory


def multiproc_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    value = environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def clean_multiproc_dir(path: Path) -> int:
    """Create ``path`` if needed and remove every value file in it (a previous run's): returns how many.
    Only the parent calls this, before any process of this run has recorded a value."""
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for old in path.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_processes(path: Path, alive: Callable[[int], bool] = pid_alive) -> list[int]:
    """``mark_process_dead`` for every pid with a live-gauge file in ``path`` that no longer runs (a child
    killed by the hard time limit runs no shutdown hook). Counters and histograms of dead processes stay:
    the totals must not go backwards. Returns the pids reaped."""
    pids = {int(m.group(1)) for f in path.glob("gauge_live*.db") if (m := _LIVE_GAUGE_FILE.match(f.name))}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not alive(pid))
    for pid in dead:
        mark_process_dead(pid, path)
    return dead


def mark_process_dead(pid: int, path: Path) -> None:
    """prometheus-client's bookkeeping for a process that exited: drop its live-gauge files."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


class ReapingMultiProcessCollector(multiprocess.MultiProcessCollector):
    """Every process's values from the directory, after reaping the live gauges of dead processes."""

    def __init__(self, registry: CollectorRegistry | None, path: Path) -> None:
        super().__init__(registry, path=str(path))  # type: ignore[no-untyped-call]
        self.directory = path

    def collect(self) -> Iterable[Metric]:
        reap_dead_processes(self.directory)
        return super().collect()  # type: ignore[no-untyped-call,no-any-return]


# --------------------------------------------------------------------------- series computed at scrape


def queue_keys(
    queue: str, sep: str = KOMBU_SEP, priority_steps: Sequence[int] = KOMBU_PRIORITY_STEPS, prefix: str = ""
) -> list[str]:
    """The Redis lists kombu keeps for ``queue``: the queue itself (priority 0) and one per other
    priority step, each under the transport's ``global_keyprefix``."""
    names = [queue if step == 0 else f"{queue}{sep}{step}" for step in sorted(set(priority_steps) | {0})]
    return [prefix + name for name in names]


@dataclass(eq=False)
class QueueDepthCollector:
    """``gco_queue_depth{region,queue}`` from one pipelined LLEN per list at each scrape. A Redis
    failure leaves the series out of that scrape (logged at debug, never with the URL)."""

    connect: Callable[[], redis.Redis]
    region: str
    queues: Sequence[str]
    sep: str = KOMBU_SEP
    priority_steps: Sequence[int] = KOMBU_PRIORITY_STEPS
    prefix: str = ""
    _client: redis.Redis | None = field(default=None, init=False, repr=False)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        depths = self.depths()
        if depths is None:
            return
        family = GaugeMetricFamily(
            "gco_queue_depth",
            "Messages waiting in the region's queue (all priorities).",
            labels=["region", "queue"],
        )
        for queue, depth in depths.items():
            family.add_metric([self.region, queue], depth)
        yield family

    def depths(self) -> dict[str, int] | None:
        keys = {q: queue_keys(q, self.sep, self.priority_steps, self.prefix) for q in self.queues}
        try:
            if self._client is None:
                self._client = self.connect()
            pipe = self._client.pipeline(transaction=False)
            for names in keys.values():
                for name in names:
                    pipe.llen(name)
            lengths = iter(pipe.execute())
        except redis.RedisError as exc:
            log.debug("queue depth unavailable: %s", type(exc).__name__)
            return None
        return {queue: sum(int(next(lengths)) for _ in names) for queue, names in keys.items()}


@dataclass(frozen=True)
class SettingsCollector:
    """Settings the alert rules compare against: ``gco_reconcile_interval_seconds{region}``."""

    region: str
    reconcile_interval_seconds: float

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gco_reconcile_interval_seconds", "RECONCILE_INTERVAL_SECONDS of the region.", labels=["region"]
        )
        family.add_metric([self.region], self.reconcile_interval_seconds)
        yield family


@dataclass(frozen=True)
class _Forward:
    """Another registry's metrics, as one collector of the exporter's registry."""

    source: CollectorRegistry

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def scrape_collectors(settings: Settings, transport_options: Mapping[str, Any]) -> list[Collector]:
    """The collectors computed at scrape time for ``settings``' region."""
    sep = transport_options.get("sep", KOMBU_SEP)
    steps = transport_options.get("priority_steps", KOMBU_PRIORITY_STEPS)
    prefix = transport_options.get("global_keyprefix", "")
    target = settings.redis_target

    def connect() -> redis.Redis:
        from gco_tasks.adapters.locks import redis_client  # plain, TLS or Sentinel, as the broker

        return redis_client(target, socket_timeout=2, socket_connect_timeout=2)

    return [
        QueueDepthCollector(connect, settings.region, [settings.queue], sep, steps, prefix),
        SettingsCollector(settings.region, float(settings.reconcile_interval_seconds)),
    ]


def exporter_registry(extra: Iterable[Collector], directory: Path | None) -> CollectorRegistry:
    """What the exporter serves: every process's values (multiprocess mode) or this process's (the
    fleet's registry, with the process and GC collectors of prometheus-client), plus ``extra``."""
    registry = CollectorRegistry(auto_describe=False)
    if directory is not None:
        ReapingMultiProcessCollector(registry, directory)
        ProcessCollector(registry=registry)  # the parent's own CPU, memory and open files
    else:
        registry.register(_Forward(metrics.current().registry))
    for collector in extra:
        registry.register(collector)
    return registry


# --------------------------------------------------------------------------- the HTTP exporter


@dataclass
class Exporter:
    """The HTTP exporter of one process (started at most once)."""

    registry: CollectorRegistry
    port: int
    address: str = "0.0.0.0"  # scraped from other pods; the NetworkPolicy restricts it to the port
    _server: Any = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> bool:
        """Serve ``/metrics`` on ``port``; False when disabled (port 0) or the port is taken (logged:
        a metrics problem must not stop the worker; Prometheus' ``up`` shows it)."""
        if self.port == 0 or self.running:
            return self.running
        # No *_created series: they would double the number of series for nothing an alert uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        try:
            self._server, self._thread = start_http_server(self.port, self.address, registry=self.registry)
        except OSError as exc:
            log.error("metrics exporter cannot listen on port %d: %s", self.port, exc.strerror or exc)
            return False
        log.info("metrics exporter listening on port %d", self.port)
        return True

    def forget_after_fork(self) -> None:
        """In a pool child forked after the exporter started: close this process's copy of the listening
        socket (the parent keeps serving) so that a child never holds the port."""
        server, self._server, self._thread = self._server, None, None
        if server is not None:
            server.socket.close()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------- Celery signal handlers


@dataclass(repr=False)
class Observability:
    """The handlers ``install`` connects, bound to one app and its settings. Its repr names the region
    only: Celery logs a failing signal handler with its receiver's repr, and the settings hold the
    Redis URL (a password)."""

    app: Any
    source: Settings | Callable[[], Settings]  # the settings, or how to read them when first needed
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    role: str = ""  # "worker" or "beat" once the process says which it is
    exporter: Exporter | None = None
    _tokens: dict[str, Any] = field(default_factory=dict)
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> Settings:
        return self.source if isinstance(self.source, Settings) else self.source()

    @property
    def region(self) -> str:
        return self.settings.region

    def __repr__(self) -> str:
        return f"<Observability region={self.region!r} role={self.role!r}>"

    def _ours(self, sender: Any) -> bool:
        return getattr(sender, "app", self.app) is self.app

    # --- process lifecycle ---------------------------------------------------------------------

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            self.role = "worker"
            metrics.set_default_region(self.region)  # before the pool forks: children inherit it
            self._clean()
            self._warn_without_multiproc_dir(sender)

    def on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            self.start_exporter()

    def on_beat_init(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            self.role = "beat"
            metrics.set_default_region(self.region)
            self._clean()
            self.start_exporter()

    def on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender) and self.exporter is not None:
            self.exporter.stop()

    def on_worker_process_init(self, **_: Any) -> None:
        if self.exporter is not None:
            self.exporter.forget_after_fork()

    def on_worker_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        directory = multiproc_dir(self.environ)
        if directory is not None and pid:
            with contextlib.suppress(OSError):
                mark_process_dead(pid, directory)

    def _warn_without_multiproc_dir(self, worker: Any) -> None:
        """A prefork worker without the multiprocess directory would serve its parent's values only."""
        prefork = "prefork" in str(getattr(worker, "pool_cls", ""))
        if prefork and self.settings.metrics_port and multiproc_dir(self.environ) is None:
            log.warning(
                "%s is not set: this prefork worker's /metrics shows only its parent process, not the "
                "tasks its pool runs; set it to an empty writable directory",
                MULTIPROC_ENV,
            )

    def _clean(self) -> None:
        directory = multiproc_dir(self.environ)
        if directory is not None:
            removed = clean_multiproc_dir(directory)
            log.debug("metrics directory %s emptied (%d old files)", directory, removed)

    def start_exporter(self) -> None:
        if self.exporter is None:
            options = self.app.conf.broker_transport_options or {}
            collectors = scrape_collectors(self.settings, options)
            registry = exporter_registry(collectors, multiproc_dir(self.environ))
            self.exporter = Exporter(registry, self.settings.metrics_port)
        self.exporter.start()

    # --- tasks ---------------------------------------------------------------------------------

    def on_task_prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is None or not self._ours(task):
            return
        token = logging_setup.bind(task_id=task_id, region=self.region)
        with self._tokens_lock:
            self._tokens[task_id] = token
        metrics.task_started(self.region, getattr(task, "name", None))

    def on_task_postrun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is None or not self._ours(task):
            return
        with self._tokens_lock:
            token = self._tokens.pop(task_id, None)
        if token is not None:
            with contextlib.suppress(ValueError):  # bound in another context (should not happen)
                logging_setup.restore(token)
        metrics.task_finished(self.region, getattr(task, "name", None))

    def on_task_revoked(
        self, sender: Any = None, request: Any = None, expired: bool = False, **_: Any
    ) -> None:
        if expired and self._ours(sender):
            name = getattr(sender, "name", None) or getattr(request, "task", None)
            metrics.record_expired_message(self.region, name)
            args = getattr(request, "args", None) or []
            about = f" for {args[0]}" if args and isinstance(args[0], str) else ""
            log.warning("%s message%s expired in the queue unrun (a later cycle sends it again)", name, about)

    def on_after_task_publish(self, sender: str | None = None, headers: Any = None, **_: Any) -> None:
        if self.role == "beat":
            task = (headers or {}).get("task") if isinstance(headers, Mapping) else None
            metrics.record_beat_sent(self.region, task or sender)

    # --- logging -------------------------------------------------------------------------------

    def on_logger_ready(self, logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None:
            logging_setup.celery_logger_ready(logger, self.settings.log_format, {"region": self.region})


@dataclass
class Installed:
    """What ``install`` connected; ``uninstall`` disconnects it (tests)."""

    observability: Observability
    connections: list[tuple[Any, Callable[..., None]]]
    previous_region: str

    def uninstall(self) -> None:
        for signal, handler in self.connections:
            signal.disconnect(handler)
        metrics.set_default_region(self.previous_region)
        if self.observability.exporter is not None:
            self.observability.exporter.stop()


def install(
    app: Any, settings: Settings | Callable[[], Settings], environ: Mapping[str, str] | None = None
) -> Installed:
    """Connect the observability of ``app``'s worker and beat processes (docs/architecture.md).
    Call once, where the app is created. ``settings`` may be a function returning them (the app module
    passes ``current_settings``), called when a worker or beat process starts, not at import."""
    from celery import signals

    previous_region = metrics.default_region()
    if isinstance(settings, Settings):
        metrics.set_default_region(settings.region)
    obs = Observability(app, settings, os.environ if environ is None else environ)
    connections: list[tuple[Any, Callable[..., None]]] = [
        (signals.worker_init, obs.on_worker_init),
        (signals.worker_ready, obs.on_worker_ready),
        (signals.worker_shutdown, obs.on_worker_shutdown),
        (signals.worker_process_init, obs.on_worker_process_init),
        (signals.worker_process_shutdown, obs.on_worker_process_shutdown),
        (signals.beat_init, obs.on_beat_init),
        (signals.task_prerun, obs.on_task_prerun),
        (signals.task_postrun, obs.on_task_postrun),
        (signals.task_revoked, obs.on_task_revoked),
        (signals.after_task_publish, obs.on_after_task_publish),
        (signals.after_setup_logger, obs.on_logger_ready),
        (signals.after_setup_task_logger, obs.on_logger_ready),
    ]
    for signal, handler in connections:
        signal.connect(handler, weak=False)
    return Installed(obs, connections, previous_region)
