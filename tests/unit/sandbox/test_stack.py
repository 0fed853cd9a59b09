"""Unit tests of the sandbox's pure parts: environment assembly, command lines, examples, readiness and the
rows the live view shows. No process is started (except ``bash`` to check the env file really sources)."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from gco_sandbox import stack
from gco_sandbox.live import Row, age, changed_lines, describe, render_table, status_rows
from gco_sandbox.services import redis_argv
from gco_sandbox.up import missing_regions
from gco_tasks.core.records import Endpoint

WHERE = stack.Endpoints(
    redis_url="redis://127.0.0.1:1234/0",
    dynamodb_url="http://localhost:4321",
    kubeconfigs={
        "eu-west-1": Path("/state/eu-west-1/kubeconfig.yaml"),
        "us-east-1": Path("/state/us-east-1/k.yaml"),
    },
    flower_port=5599,
)
CALLER = {
    "PATH": "/usr/bin",
    "HOME": "/home/me",
    "AWS_PROFILE": "production",
    "AWS_SECRET_ACCESS_KEY": "real-secret",
    "KUBECONFIG": "/home/me/.kube/prod",
    "REDIS_URL": "redis://prod:6379/0",
    "FLOWER_UNAUTHENTICATED_API": "true",
    "REGION": "ap-south-1",
    "INFERENCE_NAMESPACE": "custom-ns",
}


@pytest.fixture()
def client() -> dict[str, str]:
    return stack.client_env(WHERE, ["eu-west-1", "us-east-1"], "gco:secret")


# ---- environment ----


def test_client_env_points_every_tool_at_the_sandbox(client: dict[str, str]) -> None:
    assert client["REDIS_URL"] == WHERE.redis_url
    assert client["AWS_ENDPOINT_URL_DYNAMODB"] == WHERE.dynamodb_url
    assert client["KUBECONFIG"] == client["KUBECONFIG_EU_WEST_1"] == "/state/eu-west-1/kubeconfig.yaml"
    assert client["KUBECONFIG_US_EAST_1"] == "/state/us-east-1/k.yaml", "each region its own cluster"
    assert "KNOWN_REGIONS" not in client
    assert client["REGION"] == client["DYNAMODB_REGION"] == client["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert client["AWS_ACCESS_KEY_ID"] == "testing" and client["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert client["INFERENCE_ENDPOINTS_TABLE_NAME"] == "gco-inference-endpoints"
    assert client["FLOWER_URL"] == "http://127.0.0.1:5599"
    assert client["FLOWER_BASIC_AUTH"] == "gco:secret"


def test_env_file_sources_to_the_same_values_even_with_shell_characters(tmp_path: Path) -> None:
    env = {"PLAIN": "value", "ODD": "a b'c\"$HOME;`x`", "EMPTY": ""}
    path = tmp_path / "env"
    path.write_text(stack.env_file_text(env))
    assert all(line.startswith(("export ", "#")) for line in path.read_text().splitlines())
    shell = subprocess.run(
        ["bash", "-c", f'source {path}; printf "%s\\0" "$PLAIN" "$ODD" "$EMPTY"'],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shell.stdout.decode().split("\0")[:3] == ["value", "a b'c\"$HOME;`x`", ""]


def test_env_file_puts_this_venv_bin_first_on_path(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text(stack.env_file_text({"A": "1"}, bin_dirs=[Path("/opt/my venv/bin"), Path("/k/bin")]))
    shell = subprocess.run(
        ["bash", "-c", f'source {path}; printf "%s" "$PATH"'],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shell.stdout.decode() == "/opt/my venv/bin:/k/bin:/usr/bin:/bin"
    assert Path(sys.executable).parent == stack.BIN_DIR
    assert (stack.BIN_DIR / "gco-tasks").is_file() and (stack.BIN_DIR / "celery").is_file()


def test_a_stale_env_file_says_so_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "env"
    text = stack.env_file_text({"REDIS_URL": "redis://127.0.0.1:1/0"}, bin_dirs=[])
    path.write_text(stack.stale_env_file_text(text, "2025-01-01 10:00:00"))
    shell = subprocess.run(
        ["bash", "-c", f'source {path}; echo "code=$? redis=${{REDIS_URL:-unset}}"'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shell.stdout.strip() == "code=1 redis=unset"
    assert "stale: the sandbox that wrote it stopped at 2025-01-01 10:00:00" in shell.stderr
    assert "REDIS_URL=" in path.read_text(), "kept for reference"


def test_children_never_inherit_what_points_elsewhere() -> None:
    env = stack.base_env(CALLER)
    for key in (
        "AWS_PROFILE",
        "AWS_SECRET_ACCESS_KEY",
        "KUBECONFIG",
        "REDIS_URL",
        "FLOWER_UNAUTHENTICATED_API",
    ):
        assert key not in env, key
    assert "REGION" not in env
    assert env["PATH"] == "/usr/bin" and env["INFERENCE_NAMESPACE"] == "custom-ns"
    assert env["PYTHONPATH"].split(":")[0] == str(stack.SOURCE_ROOT)
    assert (stack.SOURCE_ROOT / "gco_tasks" / "__init__.py").is_file()


def test_region_env_is_the_sandbox_with_that_region_and_no_flower_login(client: dict[str, str]) -> None:
    env = stack.region_env(CALLER, client, "us-east-1", 2, Path("/state"))
    assert env["REGION"] == "us-east-1"
    assert env["DYNAMODB_REGION"] == "eu-west-1", "one table for every region"
    assert env["REDIS_URL"] == WHERE.redis_url and env["KUBECONFIG"] == "/state/us-east-1/k.yaml"
    assert not [key for key in env if key.startswith("KUBECONFIG_")], "a worker knows only its own cluster"
    assert env["AWS_SECRET_ACCESS_KEY"] == "testing" and "AWS_PROFILE" not in env
    assert env["RECONCILE_INTERVAL_SECONDS"] == "2"
    assert env["WORKER_HEARTBEAT_FILE"] == "/state/worker-us-east-1.heartbeat"
    assert env["METRICS_PORT"] == "0", "a worker and a beat per region on one machine: no exporter"
    assert not [key for key in env if key.startswith("FLOWER_")]


def test_flower_env_has_the_login_and_never_the_unauthenticated_switch(client: dict[str, str]) -> None:
    env = stack.flower_env(CALLER, client)
    assert env["FLOWER_BASIC_AUTH"] == "gco:secret"
    assert "FLOWER_UNAUTHENTICATED_API" not in env
    assert env["REDIS_URL"] == WHERE.redis_url


def test_flower_login_is_random_and_well_formed() -> None:
    logins = {stack.flower_login() for _ in range(20)}
    assert len(logins) == 20
    for login in logins:
        user, sep, password = login.partition(":")
        assert user == "gco" and sep and len(password) >= 12 and ":" not in password


# ---- command lines ----


def test_worker_serves_its_region_queue_under_a_region_node_name() -> None:
    argv = stack.worker_argv("eu-west-1")
    assert argv[:5] == stack.CELERY and argv[5] == "worker"
    assert argv[argv.index("-Q") + 1] == "gco.eu-west-1"
    assert argv[argv.index("-n") + 1] == "eu-west-1@%h"
    assert "--without-mingle" in argv and "--without-gossip" in argv


def test_flower_listens_on_loopback_at_the_port() -> None:
    argv = stack.flower_argv(5599)
    assert argv[1:3] == ("-m", "gco_tasks.flower"), "through the login guard"
    assert "--port=5599" in argv and "--address=127.0.0.1" in argv


def test_redis_is_private_and_never_evicts() -> None:
    argv = redis_argv("/usr/bin/redis-server", 7000, Path("/state"))
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--port"] == "7000" and pairs["--bind"] == "127.0.0.1"
    assert pairs["--save"] == "" and pairs["--appendonly"] == "no"
    assert pairs["--maxmemory-policy"] == "noeviction" and pairs["--dir"] == "/state"


def test_fleet_has_a_worker_and_beat_per_region_and_one_flower(client: dict[str, str]) -> None:
    children = stack.fleet_children(CALLER, client, ["us-east-1", "eu-west-1"], 5, Path("/s"), 5599)
    assert [child.name for child in children] == [
        "worker-us-east-1",
        "beat-us-east-1",
        "worker-eu-west-1",
        "beat-eu-west-1",
        "flower",
    ]
    regions = {child.name: child.env.get("REGION") for child in children}
    assert regions["beat-eu-west-1"] == regions["worker-eu-west-1"] == "eu-west-1"
    assert regions["beat-us-east-1"] == "us-east-1"
    assert "FLOWER_BASIC_AUTH" in children[-1].env


# ---- examples and options ----


def test_examples_are_valid_records_one_plain_one_with_a_20_percent_canary() -> None:
    web, llm = stack.example_endpoints(["us-east-1", "eu-west-1"])
    for endpoint in (web, llm):
        assert endpoint.target_regions == ["us-east-1", "eu-west-1"]
        assert Endpoint.from_item(endpoint.to_item()) == endpoint
    assert web.spec.image == "nginx:1.27" and web.spec.canary is None
    assert llm.spec.canary is not None and llm.spec.canary.weight == 20


def test_regions_default_dedupe_and_validate() -> None:
    assert stack.unique_regions(None) == ["us-east-1"]
    assert stack.unique_regions(["eu-west-1", "us-east-1", "eu-west-1"]) == ["eu-west-1", "us-east-1"]
    assert stack.check_regions(["us-east-1", "ap-southeast-2"]) == []
    assert len(stack.check_regions(["US East", "", "a.b", "-x"], allow_unknown=True)) == 4
    assert "did you mean 'us-east-1'?" in stack.check_regions(["us-est-1"])[0]
    assert stack.check_regions(["mx-south-9"], allow_unknown=True) == []
    assert stack.extra_known_regions(["us-east-1"]) == ""
    assert stack.extra_known_regions(["mx-south-9"], "us-east-1") == "us-east-1,mx-south-9"


def test_without_region_the_sandbox_says_which_it_runs() -> None:
    assert stack.default_regions({}) == (
        ["us-east-1"],
        "no --region given and REGION is unset: running us-east-1 (pass --region R, repeatable, for other "
        "regions)",
    )
    regions, note = stack.default_regions({"REGION": "eu-west-1"})
    assert regions == ["eu-west-1"] and "REGION=eu-west-1" in note


def test_ready_when_flower_lists_a_worker_of_every_region() -> None:
    workers = {"us-east-1@host": {}, "other@host": {}}
    assert missing_regions(workers, ["us-east-1", "eu-west-1"]) == ["eu-west-1"]
    assert missing_regions({**workers, "eu-west-1@host": {}}, ["us-east-1", "eu-west-1"]) == []
    assert missing_regions({}, ["us-east-1"]) == ["us-east-1"]


# ---- live view ----

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def item(name: str, regions: list[str], **status: dict[str, object]) -> dict[str, object]:
    return {
        "endpoint_name": name,
        "desired_state": "running",
        "target_regions": regions,
        "region_status": status,
    }


def test_rows_one_per_endpoint_and_sandbox_region_pending_until_reported() -> None:
    items = [
        item(
            "b",
            ["us-east-1", "eu-west-1", "ap-south-1"],
            **{"us-east-1": {"state": "running", "replicas_ready": 2, "replicas_desired": 2}},
        ),
        item("a", ["eu-west-1"]),
    ]
    rows = status_rows(items, ["us-east-1", "eu-west-1"])
    assert [(r.endpoint, r.region, r.state, r.ready, r.replicas) for r in rows] == [
        ("a", "eu-west-1", "pending", 0, 0),
        ("b", "eu-west-1", "pending", 0, 0),
        ("b", "us-east-1", "running", 2, 2),
    ]


def test_rows_tolerate_malformed_items() -> None:
    items: list[dict[str, object]] = [
        {"endpoint_name": "x", "target_regions": "us-east-1"},
        {"endpoint_name": "y", "target_regions": ["us-east-1"], "region_status": {"us-east-1": "junk"}},
        {"endpoint_name": "z", "target_regions": ["us-east-1"], "region_status": {"us-east-1": {}}},
        {"target_regions": ["us-east-1"], "region_status": {"us-east-1": {"replicas_ready": "n/a"}}},
    ]
    rows = status_rows(items, ["us-east-1"])
    assert [(r.endpoint, r.state, r.ready) for r in rows] == [
        ("?", "?", 0),
        ("y", "pending", 0),
        ("z", "?", 0),
    ]


def test_change_lines_ignore_heartbeats_and_report_errors_and_removals() -> None:
    first = Row("a", "us-east-1", "running", "creating", 0, 1, "t1", "")
    heartbeat = first._replace(last_sync="t2")
    ready = first._replace(state="running", ready=1)
    broken = ready._replace(state="error", error="bad image")
    assert changed_lines({}, [first]) == ["a [us-east-1]: creating 0/1 (desired running)"]
    assert changed_lines({first.key: first}, [heartbeat]) == []
    assert changed_lines({first.key: first}, [ready]) == ["a [us-east-1]: running 1/1 (desired running)"]
    assert changed_lines({ready.key: ready}, [broken]) == [describe(broken)]
    assert "error: bad image" in describe(broken)
    assert changed_lines({ready.key: ready}, []) == ["a [us-east-1]: gone from the table"]


def test_age_of_last_sync() -> None:
    assert age((NOW - timedelta(seconds=3)).isoformat(), NOW) == "3s ago"
    assert age((NOW - timedelta(minutes=5)).isoformat(), NOW) == "5m ago"
    assert age((NOW - timedelta(hours=3)).isoformat(), NOW) == "3h ago"
    assert age(None, NOW) == "-" and age("yesterday", NOW) == "-"
    assert age((NOW + timedelta(seconds=5)).isoformat(), NOW) == "0s ago"


def test_table_shows_state_ready_last_sync_and_error() -> None:
    rows = [
        Row("web", "us-east-1", "running", "running", 1, 1, (NOW - timedelta(seconds=4)).isoformat(), ""),
        Row("llm", "us-east-1", "running", "error", 0, 1, None, "image pull failed"),
    ]
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(render_table(rows, now=NOW, note="Ctrl-C stops everything"))
    text = console.export_text()
    assert "web" in text and "1/1" in text and "4s ago" in text
    assert "image pull failed" in text and "Ctrl-C stops everything" in text
    console.print(render_table([], now=NOW))
    assert "(no endpoints yet)" in console.export_text()
