"""The one-command sandbox, as data: which processes to start, with which command lines and environment,
which example endpoints to deploy, and what environment to hand to another terminal.

Where it stands in the flow: before everything, on a laptop. ``gco-tasks sandbox`` (``up.py``) asks this
module what to run and runs it; nothing here starts a process or touches the network, so every decision is
unit-tested. The fleet processes are the same ``celery -A gco_tasks worker|beat|flower`` commands a region
runs (see the Procfile), pointed at local stand-ins: a private redis-server, moto's DynamoDB and the
sandbox Kubernetes API server.

One Redis serves every region: RedBeat keys and endpoint locks are prefixed ``gco:<region>:`` and each
region has its own queue ``gco.<region>``. One table serves every region, as in GCO (a global table):
``DYNAMODB_REGION`` pins it to the first region so every process and the operator's CLI see the same one.
Each region has its own Kubernetes API server (``clusters.py``), as in production: its worker gets that
region's ``KUBECONFIG``; another shell gets the first region's as ``KUBECONFIG`` and every region's as
``KUBECONFIG_<REGION>``, and the venv's ``bin`` first on ``PATH`` (``env_file_text``).
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gco_tasks
from gco_sandbox.services import SANDBOX_AWS_ENV
from gco_tasks.core.conventions import queue_for_region
from gco_tasks.core.records import Endpoint, parse_spec
from gco_tasks.core.regions import known_regions, kubeconfig_variable, region_problems

DEFAULT_REGION = "us-east-1"
DEFAULT_FLOWER_PORT = 5555
FLOWER_USER = "gco"
TABLE_NAME = "gco-inference-endpoints"
CELERY = (sys.executable, "-m", "celery", "-A", "gco_tasks")
#: The directory holding the ``gco_tasks`` package the sandbox runs (its children import the same one).
SOURCE_ROOT = Path(gco_tasks.__file__).resolve().parents[1]

#: Variables of the caller's environment that would point a child at something other than the sandbox
#: (real AWS credentials or profiles, another Redis or cluster, an unauthenticated Flower).
_DROPPED_PREFIXES = ("AWS_", "KUBECONFIG", "REDIS_URL", "FLOWER_")
#: Where the commands of this Python live (``gco-tasks``, ``celery``): first on the env file's PATH.
BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class Endpoints:
    """Where the stand-ins listen, once started."""

    redis_url: str
    dynamodb_url: str
    kubeconfigs: Mapping[str, Path]  # region -> the kubeconfig of its own API server
    flower_port: int


@dataclass(frozen=True)
class ChildSpec:
    """One process to start: a name for logs and messages, its command line and its environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


def flower_login() -> str:
    """``user:password`` for Flower's basic auth, with a fresh random password (Flower is never open)."""
    return f"{FLOWER_USER}:{secrets.token_urlsafe(12)}"


def client_env(
    where: Endpoints,
    regions: Sequence[str],
    flower_auth: str,
    table: str = TABLE_NAME,
    extra_known_regions: str = "",
) -> dict[str, str]:
    """The environment another terminal needs so ``gco-tasks endpoints ...`` and
    ``celery -A gco_tasks call ...`` reach the sandbox (first region's queue and cluster by default;
    every region's cluster as ``KUBECONFIG_<REGION>``). ``extra_known_regions`` becomes
    ``KNOWN_REGIONS`` when the sandbox runs a region the default list lacks."""
    home = regions[0]
    env = {
        "REDIS_URL": where.redis_url,
        "AWS_ENDPOINT_URL_DYNAMODB": where.dynamodb_url,
        **SANDBOX_AWS_ENV,
        "AWS_DEFAULT_REGION": home,
        "DYNAMODB_REGION": home,
        "KUBECONFIG": str(where.kubeconfigs[home]),
        **{kubeconfig_variable(region): str(where.kubeconfigs[region]) for region in regions},
        "REGION": home,
        "INFERENCE_ENDPOINTS_TABLE_NAME": table,
        "FLOWER_URL": f"http://127.0.0.1:{where.flower_port}",
        "FLOWER_BASIC_AUTH": flower_auth,
    }
    if extra_known_regions:
        env["KNOWN_REGIONS"] = extra_known_regions
    return env


def env_file_text(env: Mapping[str, str], bin_dirs: Sequence[Path] = (BIN_DIR,)) -> str:
    """``export K=V`` lines (values shell-quoted) so ``source FILE`` works in sh, bash and zsh, with
    ``bin_dirs`` (this venv's ``bin``, and the built ``kubectl``'s when there is one) put first on
    ``PATH`` so ``gco-tasks``, ``celery`` and ``kubectl`` are found."""
    lines = ["# gco-tasks sandbox: `source` this file to use the sandbox from another shell."]
    if bin_dirs:
        joined = ":".join(shlex.quote(str(folder)) for folder in bin_dirs)
        lines.append(f'export PATH={joined}:"$PATH"')
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def stale_env_file_text(text: str, stopped_at: str) -> str:
    """The env file of a sandbox that has stopped: kept for reference, but sourcing it says so and
    changes nothing (its ports are gone; the next sandbox writes a fresh one)."""
    warning = (
        f"gco-tasks sandbox: this environment is stale: the sandbox that wrote it stopped at {stopped_at}. "
        "Start it again (make sandbox) and source the file it writes."
    )
    header = [
        f"# STALE since {stopped_at}: the sandbox that wrote this file has stopped.",
        f"echo {shlex.quote(warning)} >&2",
        "return 1 2>/dev/null || exit 1",
    ]
    return "\n".join(header) + "\n" + text


def base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without anything that could point a child elsewhere: AWS, Redis and
    Kubernetes settings, Flower's, and every gco-tasks setting the sandbox decides itself."""
    ours = {"REGION", "DYNAMODB_REGION", "INFERENCE_ENDPOINTS_TABLE_NAME", "RECONCILE_INTERVAL_SECONDS"}
    ours |= {"WORKER_HEARTBEAT_FILE", "METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"}
    env = {
        key: value
        for key, value in environ.items()
        if not key.upper().startswith(_DROPPED_PREFIXES) and key.upper() not in ours
    }
    # Children import the very gco_tasks this command runs, whatever their working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), environ.get("PYTHONPATH", "")]))
    return env


def region_env(
    environ: Mapping[str, str], client: Mapping[str, str], region: str, interval: int, state_dir: Path
) -> dict[str, str]:
    """The environment of one region's worker and beat: the sandbox's services, REGION=<region>."""
    env = base_env(environ)
    env.update({k: v for k, v in client.items() if not k.startswith(("FLOWER_", "KUBECONFIG"))})
    env.update(
        KUBECONFIG=client[kubeconfig_variable(region)],
        REGION=region,
        RECONCILE_INTERVAL_SECONDS=str(interval),
        WORKER_HEARTBEAT_FILE=str(state_dir / f"worker-{region}.heartbeat"),
        METRICS_PORT="0",  # several workers and beats on one machine: no Prometheus exporter
        PYTHONUNBUFFERED="1",
    )
    return env


def flower_env(environ: Mapping[str, str], client: Mapping[str, str]) -> dict[str, str]:
    """Flower's environment: the first region's settings plus its basic-auth login (never unauthenticated)."""
    env = base_env(environ)
    env.update({k: v for k, v in client.items() if k != "FLOWER_URL"})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_argv(region: str) -> tuple[str, ...]:
    """The region's worker, as the Procfile runs it, named ``<region>@<host>`` so several regions'
    workers on one machine are told apart (in Flower too)."""
    return (
        *CELERY, "worker",
        "-Q", queue_for_region(region),
        "-n", f"{region}@%h",
        "--concurrency", "2",
        "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    )  # fmt: skip


def beat_argv(region: str) -> tuple[str, ...]:
    """The region's beat (RedBeat: its schedule and lock live in Redis under ``gco:<region>:redbeat``)."""
    return (*CELERY, "beat", "--loglevel", "INFO")


def flower_argv(port: int) -> tuple[str, ...]:
    """Flower through its login guard (``gco_tasks.flower``), on loopback only."""
    return (sys.executable, "-m", "gco_tasks.flower", f"--port={port}", "--address=127.0.0.1")


def fleet_children(
    environ: Mapping[str, str],
    client: Mapping[str, str],
    regions: Sequence[str],
    interval: int,
    state_dir: Path,
    flower_port: int,
) -> list[ChildSpec]:
    """Every Celery process of the sandbox: a worker and a beat per region, then one Flower."""
    children = []
    for region in regions:
        env = region_env(environ, client, region, interval, state_dir)
        children.append(ChildSpec(f"worker-{region}", worker_argv(region), env))
        children.append(ChildSpec(f"beat-{region}", beat_argv(region), env))
    children.append(ChildSpec("flower", flower_argv(flower_port), flower_env(environ, client)))
    return children


def example_endpoints(regions: Sequence[str]) -> list[Endpoint]:
    """Two endpoints to watch converge: a plain web server, and a model server with a 20 % canary."""
    targets = list(regions)
    web = parse_spec({"image": "nginx:1.27", "port": 80, "gpu_count": 0, "health_check_path": "/"})
    llm = parse_spec(
        {
            "image": "vllm/vllm-openai:v0.6.3",
            "canary": {"image": "vllm/vllm-openai:v0.6.4", "weight": 20, "replicas": 1},
        }
    )
    return [Endpoint.new("example-web", web, targets), Endpoint.new("example-llm", llm, targets)]


def unique_regions(regions: Sequence[str] | None) -> list[str]:
    """The regions asked for, in order, each once; ``us-east-1`` when none."""
    seen: list[str] = []
    for region in regions or [DEFAULT_REGION]:
        if region not in seen:
            seen.append(region)
    return seen


def default_regions(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """The regions when ``--region`` is not given: ``REGION``'s, else us-east-1, and the sentence that
    says which and why (the sandbox never picks a region silently)."""
    region = environ.get("REGION", "").strip()
    if region:
        return [
            region
        ], f"no --region given: running REGION={region} (pass --region R, repeatable, for others)"
    return [DEFAULT_REGION], (
        f"no --region given and REGION is unset: running {DEFAULT_REGION} "
        "(pass --region R, repeatable, for other regions)"
    )


def check_regions(regions: Sequence[str], known_setting: str = "", allow_unknown: bool = False) -> list[str]:
    """Problems with region names (unknown, or not shaped like a region: they become queue names and
    Redis key prefixes); empty when fine."""
    return region_problems(regions, known_regions(known_setting), allow_unknown)


def extra_known_regions(regions: Sequence[str], known_setting: str = "") -> str:
    """``KNOWN_REGIONS`` for the sandbox's processes when it runs regions the list lacks (allowed with
    ``--allow-unknown-region``), else empty: the known ones plus those."""
    known = known_regions(known_setting)
    missing = [region for region in regions if region not in known]
    return ",".join([*known, *missing]) if missing else ""
