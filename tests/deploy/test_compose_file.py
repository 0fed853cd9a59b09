"""compose.yaml: the fleet with Redis, DynamoDB Local and k3s on a machine with Docker.

Docker's engine is not available here, so the file is parsed (with compose's `${VAR:-default}` and `$$`
interpolation applied) and its structure checked: images, healthchecks, start order, ports, the
environment the fleet reads, and that the worker reaches k3s through a kubeconfig rewritten to the
k3s service name (the rewrite itself is run on a kubeconfig shaped like the one k3s writes).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gco_tasks.core.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
FLEET = ("init", "worker", "beat", "flower")
BACKING = ("redis", "dynamodb", "k3s")
HEARTBEAT_PROBE = 'test $(( $(date +%s) - $(stat -c %Y "$WORKER_HEARTBEAT_FILE") )) -lt 60'
SETTING_VARIABLES = {name.upper() for name in Settings.model_fields}

Obj = dict[str, Any]


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of `${VAR}`, `${VAR:-default}` and `$$` (an escaped `$`)."""
    if isinstance(value, str):
        value = re.sub(
            r"(?<!\$)\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", value
        )
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    return value


def _load(env: dict[str, str] | None = None) -> dict[str, Obj]:
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    services: dict[str, Obj] = _interpolate(raw, env or {})["services"]
    return services


@pytest.fixture(scope="module")
def services() -> dict[str, Obj]:
    return _load()


def _mounts(service: Obj) -> dict[str, str]:
    """volume name -> mount path (read-only flag dropped)."""
    return {entry.split(":")[0]: entry.split(":")[1] for entry in service.get("volumes", [])}


def test_every_service_has_a_pinned_image(services: dict[str, Obj]) -> None:
    assert set(services) == set(FLEET) | set(BACKING)
    for name in BACKING:
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
    assert services["dynamodb"]["image"].startswith("amazon/dynamodb-local:")
    assert services["k3s"]["image"].startswith("rancher/k3s:v1.30.")
    for name in FLEET:
        assert services[name]["build"] == "." and (REPO / "Dockerfile").is_file(), name
        assert services[name]["image"] == "gco-tasks:local", name


def test_fleet_runs_hardened_as_in_kubernetes(services: dict[str, Obj]) -> None:
    for name in FLEET:
        service = services[name]
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert not service.get("privileged"), name
    assert services["k3s"]["privileged"] is True, "k3s runs containers: it needs it"


def test_backing_services_have_healthchecks(services: dict[str, Obj]) -> None:
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "http://localhost:8000" in services["dynamodb"]["healthcheck"]["test"][1]
    k3s_check = services["k3s"]["healthcheck"]["test"]
    assert k3s_check[:2] == ["CMD", "kubectl"] and "/readyz" in k3s_check
    assert "/healthcheck" in services["flower"]["healthcheck"]["test"][-1]
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "sh", "-c", HEARTBEAT_PROBE]


def test_start_order_waits_for_health_and_for_init(services: dict[str, Obj]) -> None:
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            condition = rule["condition"]
            if dependency == "init":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}"
                assert "healthcheck" in services[dependency], dependency
    assert set(services["init"]["depends_on"]) == {"k3s", "dynamodb"}
    assert services["init"]["restart"] == "no", "a one-shot"
    assert {"redis", "init"} <= set(services["worker"]["depends_on"])
    assert {"redis", "init"} <= set(services["beat"]["depends_on"])
    assert "redis" in services["flower"]["depends_on"]


def test_fleet_commands_are_exec_form(services: dict[str, Obj]) -> None:
    assert services["worker"]["command"] == [
        "celery", "-A", "gco_tasks", "worker", "-Q", "gco.us-east-1", "--loglevel", "INFO",
        "--without-mingle", "--without-gossip", "--concurrency", "4",
    ]  # fmt: skip
    assert services["beat"]["command"] == ["celery", "-A", "gco_tasks", "beat", "--loglevel", "INFO"]
    assert services["flower"]["command"] == ["python", "-m", "gco_tasks.flower", "--port=5555"]
    region_worker = _load({"REGION": "eu-west-1"})["worker"]
    assert "gco.eu-west-1" in region_worker["command"]
    assert region_worker["environment"]["REGION"] == "eu-west-1"
    assert int(services["worker"]["stop_grace_period"].removesuffix("s")) > 150, "above the task time limit"


def test_fleet_environment_points_at_the_compose_services(services: dict[str, Obj]) -> None:
    for name in FLEET:
        env = services[name]["environment"]
        assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb:8000", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"], "dummy credentials"
        libraries = ("AWS_", "FLOWER_", "KUBECONFIG", "PROMETHEUS_MULTIPROC_DIR")  # read by the libraries
        ours = {key for key in env if not key.startswith(libraries)}
        assert ours <= SETTING_VARIABLES, f"{name}: unknown settings {ours - SETTING_VARIABLES}"
        settings = load_settings({key: env[key] for key in ours})
        assert settings.queue == "gco.us-east-1"
    assert "8000:8000" in services["dynamodb"]["ports"][0]
    assert services["worker"]["environment"]["WORKER_HEARTBEAT_FILE"].startswith("/tmp/")
    multiproc = services["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc.startswith("/tmp/"), "the worker's pool writes its metric values on the tmpfs"


def test_flower_login_comes_only_from_the_shell_never_a_default(services: dict[str, Obj]) -> None:
    """A value-less entry is compose's pass-through: set in the container only when set in the shell.
    Unset, the guard (gco_tasks.flower) refuses to start Flower; there is no default login to forget."""
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] is None
    assert "change-me" not in (REPO / "compose.yaml").read_text()
    assert "FLOWER_UNAUTHENTICATED_API" not in services["flower"]["environment"]
    for name in FLEET:
        if name != "flower":
            assert "FLOWER_BASIC_AUTH" not in services[name]["environment"], name


def test_published_ports_listen_on_localhost_only(services: dict[str, Obj]) -> None:
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published, "redis, dynamodb, k3s and flower are reachable from the host"
    for port in published:
        assert port.startswith("127.0.0.1:"), port


def test_worker_reaches_k3s_through_the_rewritten_kubeconfig(
    services: dict[str, Obj], tmp_path: Path
) -> None:
    k3s, init, worker = services["k3s"], services["init"], services["worker"]
    command = k3s["command"]
    assert command[0] == "server"
    assert command[command.index("--tls-san") + 1] == "k3s", "the API certificate must be valid for 'k3s'"
    output = Path(k3s["environment"]["K3S_KUBECONFIG_OUTPUT"])
    assert k3s["environment"]["K3S_KUBECONFIG_MODE"] == "644", "readable by uid 10001"

    # k3s writes into a volume that init reads; init writes $KUBECONFIG into a volume the worker mounts.
    (k3s_volume,) = [v for v, path in _mounts(k3s).items() if path == str(output.parent)]
    k3s_seen_by_init = Path(_mounts(init)[k3s_volume]) / output.name
    kubeconfig = Path(worker["environment"]["KUBECONFIG"])
    assert init["environment"]["KUBECONFIG"] == str(kubeconfig)
    (shared,) = [v for v, path in _mounts(worker).items() if path == str(kubeconfig.parent)]
    assert _mounts(init)[shared] == str(kubeconfig.parent)
    assert f"{shared}:{kubeconfig.parent}:ro" in worker["volumes"], "the worker only reads it"

    # Run init's rewrite on a kubeconfig shaped like k3s's.
    script = init["command"][2]
    (sed_line,) = [line for line in script.splitlines() if line.startswith("sed ")]
    source = tmp_path / "k3s.yaml"
    target = tmp_path / "config"
    source.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "default", "cluster": {"server": "https://127.0.0.1:6443"}}],
            }
        )
    )
    sed_line = sed_line.replace(str(k3s_seen_by_init), shlex.quote(str(source)))
    assert str(source) in sed_line, "init reads the file k3s writes"
    subprocess.run(
        ["sh", "-c", sed_line], env={"KUBECONFIG": str(target), "PATH": "/usr/bin:/bin"}, check=True
    )
    rewritten = yaml.safe_load(target.read_text())
    assert rewritten["clusters"][0]["cluster"]["server"] == "https://k3s:6443"
    assert "gco-tasks endpoints create-table" in script
    assert "INFERENCE_NAMESPACE" in script, "init creates the namespace the fleet manages"
