"""``gco-tasks sandbox``: the whole fleet on one machine, started by one command and stopped by Ctrl-C.

Where it stands in the flow: around everything, for a laptop or CI. In order it starts a private
redis-server (child process), moto's DynamoDB (thread, table created), one Kubernetes cluster per region
(``clusters.py``: a sandbox API server each, in threads, or with ``--cluster real`` a real control plane
each, as child processes under ``<state-dir>/<region>/controlplane/``; a kubeconfig per region), the
example endpoints (unless ``--empty``), then per region a Celery worker and beat, and one Flower
(children, ``children.py``). It is ready when Flower, asked with its login, lists a worker of every
region. It then writes the environment for another shell to the env file (default
``<state dir>/env``; ``source`` it), prints it (with real control planes, also the ``kubectl ... get
pods -w`` that shows their rollouts) and shows the endpoints by region (``live.py``) until
SIGINT/SIGTERM, or until a child or a control-plane component dies (its log tail is shown, exit code 1).
Shutdown stops the Celery processes, then Redis, then the clusters and DynamoDB, in under 10 s on the
stand-in, and marks the env file stale (kept, but sourcing it says so and changes nothing). What to run
is decided in ``stack.py``; this module only does it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
from rich.console import Console
from rich.live import Live

from gco_sandbox import live as view
from gco_sandbox import stack
from gco_sandbox.children import Child, Children
from gco_sandbox.clusters import (
    ClusterFactory,
    RegionCluster,
    standin_cluster,
    start_clusters,
    stop_clusters,
)
from gco_sandbox.controlplane import ControlPlaneError, find_binaries
from gco_sandbox.services import (
    DynamoDBServer,
    ServiceError,
    free_port,
    redis_argv,
    start_dynamodb,
    wait_for_port,
)
from gco_tasks.adapters.store import EndpointStore

READY_TIMEOUT_SECONDS = 90.0
CELERY_STOP_SECONDS = 6.0
REDIS_STOP_SECONDS = 2.0
ENV_FILE = "env"


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: stop everything, exit 0."""


class SandboxFailed(Exception):
    """Something the sandbox started failed; the message says what (and shows a log tail)."""


@dataclass
class Options:
    regions: list[str]
    state_dir: Path
    empty: bool = False
    env_file: Path | None = None  # None: <state_dir>/env
    interval: int = 5
    flower_port: int | None = None
    live: bool = False
    #: Starts each region's cluster; a real control plane plugs in here.
    cluster_factory: ClusterFactory = standin_cluster
    #: KNOWN_REGIONS for the sandbox's processes when a region outside the list was allowed.
    extra_known_regions: str = ""

    @property
    def env_path(self) -> Path:
        return self.env_file or self.state_dir / ENV_FILE


@dataclass
class Running:
    """What one sandbox run started, so that shutdown can stop exactly that."""

    children: Children
    dynamodb: DynamoDBServer | None = None
    clusters: dict[str, RegionCluster] = field(default_factory=dict)
    store: EndpointStore | None = None
    client_env: dict[str, str] = field(default_factory=dict)
    env_written: bool = False


def run(options: Options, console: Console) -> int:
    """Run the sandbox until interrupted; 0 after a requested stop, 1 when something failed."""
    stop = threading.Event()
    previous = _on_signals(lambda: stop.set())
    options.state_dir.mkdir(parents=True, exist_ok=True)
    running = Running(Children(options.state_dir))
    code = 0
    try:
        started = time.monotonic()
        start(options, running, stop, console)
        announce(options, running, console, time.monotonic() - started)
        watch(options, running, stop, console)
    except Interrupted:
        pass
    except (SandboxFailed, ServiceError, ControlPlaneError) as exc:
        console.print(f"[red]sandbox failed:[/] {exc}", markup=True, highlight=False)
        code = 1
    finally:
        shutdown(options, running, console)
        _restore_signals(previous)
    return code


# --------------------------------------------------------------------------------------------------
# Start
# --------------------------------------------------------------------------------------------------


def start(options: Options, running: Running, stop: threading.Event, console: Console) -> None:
    say = _progress(console)
    redis_url = start_redis_child(running.children, options.state_dir)
    say(f"redis-server at {redis_url}")
    _check(stop, running)
    running.dynamodb = start_dynamodb()
    say(f"DynamoDB (moto) at {running.dynamodb.url}")
    running.clusters = start_clusters(options.regions, options.state_dir.resolve(), options.cluster_factory)
    for region, cluster in running.clusters.items():
        say(f"Kubernetes API server of {region} at {cluster.url} (kubeconfig {cluster.kubeconfig})")
    _check(stop, running)
    flower_port = options.flower_port or _default_flower_port()
    kubeconfigs = {region: cluster.kubeconfig for region, cluster in running.clusters.items()}
    where = stack.Endpoints(redis_url, running.dynamodb.url, kubeconfigs, flower_port)
    login = stack.flower_login()
    running.client_env = stack.client_env(
        where, options.regions, login, extra_known_regions=options.extra_known_regions
    )
    running.store = store_for(running.client_env)
    running.store.create_table()
    say(f"table {running.store.table_name} created")
    if not options.empty:
        for endpoint in stack.example_endpoints(options.regions):
            running.store.create(endpoint)
        say("example endpoints deployed: example-web, example-llm (20 % canary)")
    _check(stop, running)
    specs = stack.fleet_children(
        os.environ, running.client_env, options.regions, options.interval, options.state_dir, flower_port
    )
    for spec in specs:
        running.children.start(spec.name, spec.argv, spec.env)
    say(f"started {', '.join(spec.name for spec in specs)}; waiting for workers in Flower")
    wait_ready(running, options.regions, stop)


def start_redis_child(children: Children, state_dir: Path) -> str:
    """redis-server as a child in its own process group (so Ctrl-C does not take the broker away from
    workers that are still shutting down)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server not found on PATH: install it ('apt-get install redis-server' on Debian/Ubuntu, "
            "'brew install redis' on macOS); `make sandbox` does this for you when run as root"
        )
    port = free_port()
    child = children.start("redis", redis_argv(binary, port, state_dir.resolve()), os.environ)
    try:
        wait_for_port(port, timeout=10)
    except ServiceError:
        raise SandboxFailed(_died(child)) from None
    return f"redis://127.0.0.1:{port}/0"


def store_for(env: Mapping[str, str]) -> EndpointStore:
    """The store of the sandbox's table, configured explicitly (this process's environment is the
    caller's, not the sandbox's)."""
    client = boto3.client(
        "dynamodb",
        region_name=env["DYNAMODB_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
    )
    return EndpointStore(client, env["INFERENCE_ENDPOINTS_TABLE_NAME"])


def wait_ready(running: Running, regions: Sequence[str], stop: threading.Event) -> None:
    """Until Flower, asked with its login, lists a worker of every region (which also fills Flower's
    worker list, so a plain ``/api/workers`` shows them)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    missing: list[str] = list(regions)
    while missing:
        _check(stop, running)
        if time.monotonic() > deadline:
            raise SandboxFailed(
                f"no worker of {', '.join(missing)} in Flower after {READY_TIMEOUT_SECONDS:.0f}s"
            )
        workers = flower_workers(running.client_env, refresh=True)
        missing = missing_regions(workers, regions) if workers is not None else list(regions)
        if missing:
            stop.wait(0.5)


def flower_workers(env: Mapping[str, str], refresh: bool = False) -> dict[str, Any] | None:
    """Flower's ``/api/workers`` with the sandbox login; None while Flower does not answer."""
    url = env["FLOWER_URL"] + "/api/workers" + ("?refresh=1" if refresh else "")
    token = base64.b64encode(env["FLOWER_BASIC_AUTH"].encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body: Any = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def missing_regions(workers: Mapping[str, Any], regions: Sequence[str]) -> list[str]:
    """Regions with no worker named ``<region>@...`` among ``workers`` (Flower's answer)."""
    return [region for region in regions if not any(name.startswith(f"{region}@") for name in workers)]


def _check(stop: threading.Event, running: Running) -> None:
    if stop.is_set():
        raise Interrupted
    dead = running.children.first_dead()
    if dead is not None:
        raise SandboxFailed(_died(dead))
    for cluster in running.clusters.values():
        check_alive = getattr(cluster, "check_alive", None)  # a real control plane's components
        if check_alive is not None:
            check_alive()


def _died(child: Child) -> str:
    code = child.exit_code()
    how = f"exited with code {code}" if code is not None else "is not answering"
    return f"{child.name} (pid {child.pid}) {how}; last lines of {child.log}:\n{child.tail()}"


def _default_flower_port() -> int:
    """5555 (Flower's usual port) when it is free, else any free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", stack.DEFAULT_FLOWER_PORT))
        except OSError:
            return free_port()
    return stack.DEFAULT_FLOWER_PORT


# --------------------------------------------------------------------------------------------------
# Ready: tell the user how to use it
# --------------------------------------------------------------------------------------------------


def announce(options: Options, running: Running, console: Console, seconds: float) -> None:
    bin_dirs = [stack.BIN_DIR, *_kubectl_dir()]
    _write_atomically(options.env_path, stack.env_file_text(running.client_env, bin_dirs))
    running.env_written = True
    console.print(f"\nsandbox ready in {seconds:.1f}s. From another shell:\n", highlight=False)
    console.print(f"  source {_shown_path(options.env_path)}", highlight=False, markup=False)
    user, _, password = running.client_env["FLOWER_BASIC_AUTH"].partition(":")
    region = options.regions[0]
    lines = [
        f"  gco-tasks endpoints deploy x -i nginx:1.27 -r {region}",
        "  gco-tasks endpoints status x --watch --until running --timeout 60",
        f"  celery -A gco_tasks call gco_tasks.reconcile_endpoint --args '[\"x\"]' --queue gco.{region}",
        f"Flower: {running.client_env['FLOWER_URL']}  (user {user}, password {password})",
        f"Logs: {options.state_dir.resolve()}/*.log   Ctrl-C stops everything.\n",
    ]
    lines[-1:-1] = _kubectl_hints(running.clusters)
    console.print("\n".join(lines), highlight=False, markup=False)


def _kubectl_dir() -> list[Path]:
    """The folder of the ``kubectl`` that ``make controlplane`` built, when it is there."""
    try:
        return [find_binaries().kubectl.parent]
    except ControlPlaneError:
        return []


def _kubectl_hints(clusters: Mapping[str, RegionCluster]) -> list[str]:
    """For each real control plane, how to watch its pods and where its logs are."""
    lines = []
    for region, cluster in clusters.items():
        binaries = getattr(cluster, "binaries", None)
        if binaries is not None:
            lines.append(
                f"Watch the pods of {region}: {binaries.kubectl} --kubeconfig {cluster.kubeconfig} "
                "get pods -n gco-inference -w"
            )
            lines.append(f"Control plane logs of {region}: {getattr(cluster, 'workdir', '?')}/*.log")
    return lines


def _shown_path(path: Path) -> str:
    """The env file as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)


# --------------------------------------------------------------------------------------------------
# Watch
# --------------------------------------------------------------------------------------------------


def watch(options: Options, running: Running, stop: threading.Event, console: Console) -> None:
    """Show the endpoints each second until stopped (raises ``Interrupted``) or a child dies."""
    if options.live:
        _watch_live(options, running, stop, console)
    else:
        _watch_lines(options, running, stop, console)


def _rows(options: Options, running: Running) -> tuple[list[view.Row], str]:
    assert running.store is not None
    try:
        return view.status_rows(running.store.scan_items(), options.regions), ""
    except Exception as exc:  # the table is only being watched: show the problem, keep going
        return [], f"cannot read the table: {exc}"


def _watch_live(options: Options, running: Running, stop: threading.Event, console: Console) -> None:
    with Live(view.render_table([]), console=console, refresh_per_second=2, transient=False) as screen:
        while True:
            rows, note = _rows(options, running)
            screen.update(view.render_table(rows, note=note or "Ctrl-C stops everything"))
            stop.wait(1.0)
            _check(stop, running)


def _watch_lines(options: Options, running: Running, stop: threading.Event, console: Console) -> None:
    seen: dict[tuple[str, str], view.Row] = {}
    while True:
        rows, note = _rows(options, running)
        for line in view.changed_lines(seen, rows) if not note else [note]:
            console.print(f"{time.strftime('%H:%M:%S')} {line}", highlight=False, markup=False)
        if not note:
            seen = {row.key: row for row in rows}
        sys.stdout.flush()
        stop.wait(1.0)
        _check(stop, running)


# --------------------------------------------------------------------------------------------------
# Stop
# --------------------------------------------------------------------------------------------------


def shutdown(options: Options, running: Running, console: Console) -> None:
    """Celery processes first (they shut down against a live broker), then Redis, then the threads."""
    started = time.monotonic()
    names = [child.name for child in running.children.started]
    celery = [name for name in names if name != "redis"]
    killed = running.children.stop(celery, timeout=CELERY_STOP_SECONDS)
    killed += running.children.stop(["redis"], timeout=REDIS_STOP_SECONDS)
    stop_clusters(running.clusters)
    if running.dynamodb is not None:
        with contextlib.suppress(Exception):
            running.dynamodb.stop()
    stale = _mark_stale(options.env_path) if running.env_written else False
    note = f" (killed after the grace period: {', '.join(killed)})" if killed else ""
    console.print(
        f"sandbox stopped: {len(names)} processes in {time.monotonic() - started:.1f}s{note}", highlight=False
    )
    if stale:
        console.print(
            f"{options.env_path} is kept but marked stale: sourcing it now says so.", highlight=False
        )


def _mark_stale(path: Path) -> bool:
    """Rewrite this sandbox's env file as stale (sourcing it warns and changes nothing); whether it did."""
    try:
        text = path.read_text()
        _write_atomically(path, stack.stale_env_file_text(text, time.strftime("%Y-%m-%d %H:%M:%S")))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Signals and small helpers
# --------------------------------------------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | None


def _on_signals(callback: Callable[[], None]) -> dict[int, _Handler]:
    def handler(signum: int, frame: FrameType | None) -> None:
        callback()

    previous: dict[int, _Handler] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handler)
    return previous


def _restore_signals(previous: Mapping[int, _Handler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _progress(console: Console) -> Callable[[str], None]:
    started = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[{time.monotonic() - started:5.1f}s] {message}", highlight=False, markup=False)

    return say
