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
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gco_tasks
from gco_sandbox.services import SANDBOX_AWS_ENV
from gco_tasks.conventions import queue_for_region
from gco_tasks.endpoints import Endpoint, parse_spec

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
_REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@dataclass(frozen=True)
class Endpoints:
    """Where the stand-ins listen, once started."""

    redis_url: str
    dynamodb_url: str
    kubeconfig: Path
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
    where: Endpoints, regions: Sequence[str], flower_auth: str, table: str = TABLE_NAME
) -> dict[str, str]:
    """The environment another terminal needs so ``gco-tasks endpoints ...`` and
    ``celery -A gco_tasks call ...`` reach the sandbox (first region's queue by default)."""
    home = regions[0]
    return {
        "REDIS_URL": where.redis_url,
        "AWS_ENDPOINT_URL_DYNAMODB": where.dynamodb_url,
        **SANDBOX_AWS_ENV,
        "AWS_DEFAULT_REGION": home,
        "DYNAMODB_REGION": home,
        "KUBECONFIG": str(where.kubeconfig),
        "REGION": home,
        "INFERENCE_ENDPOINTS_TABLE_NAME": table,
        "FLOWER_URL": f"http://127.0.0.1:{where.flower_port}",
        "FLOWER_BASIC_AUTH": flower_auth,
    }


def env_file_text(env: Mapping[str, str]) -> str:
    """``export K=V`` lines (values shell-quoted) so ``source FILE`` works in sh, bash and zsh."""
    lines = ["# gco-tasks sandbox: `source` this file to use the sandbox from another shell."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


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
    env.update({k: v for k, v in client.items() if not k.startswith("FLOWER_")})
    env.update(
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
    return (*CELERY, "flower", f"--port={port}", "--address=127.0.0.1")


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


def check_regions(regions: Sequence[str]) -> list[str]:
    """Problems with region names (they become queue names and Redis key prefixes); empty when fine."""
    return [
        f"invalid region {region!r}: use lower-case letters, digits and '-' (e.g. us-east-1)"
        for region in regions
        if not _REGION.fullmatch(region)
    ]
