"""`gco-tasks endpoints status NAME` as a user types it (typer's CliRunner), against moto's DynamoDB, the
fleet harness on the sandbox API server, and, for Events, a small HTTP server that answers the one
``events.k8s.io/v1`` LIST the CLI makes (the stand-in on this branch serves no Events; the real API
server and a later stand-in do): per region state, message, last report and its age (stale when
silent), rollout progress, Events or a note saying why there are none; ``--watch`` with ``--until`` and
``--timeout``; ``--output json``/``--json``; env values redacted everywhere the CLI prints a spec."""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from typer.testing import CliRunner

from gco_sandbox.services import free_port
from gco_tasks.cli import app
from gco_tasks.core.records import RegionStatus
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import REGION, converge, run_cycle

SECRET = "tok-3f9a-very-secret"


@pytest.fixture()
def cli(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "220")
    for key in ("REGION", "KUBECONFIG", "KUBECONFIG_US_EAST_1", "KUBECONFIG_EU_WEST_1"):
        monkeypatch.delenv(key, raising=False)
    return CliRunner()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.output


def deploy(cli: CliRunner, *regions: str) -> None:
    flags = [arg for region in regions for arg in ("-r", region)]
    run(cli, "endpoints", "deploy", "demo", "-i", "nginx:1.27", "-e", f"TOKEN={SECRET}", *flags)


def state(fleet: Fleet, region: str = REGION) -> str | None:
    item = fleet.store.get_item("demo") or {}
    return (item.get("region_status", {}).get(region) or {}).get("state")


def without_ages(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "regions": [{**r, "age_seconds": None} for r in document["regions"]]}


def test_each_region_with_rollout_age_message_and_redacted_env(cli: CliRunner, fleet: Fleet) -> None:
    deploy(cli, REGION, "eu-west-1")
    converge(fleet, lambda: state(fleet) == "running")
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    report = RegionStatus(state="error", replicas_desired=1, error="exceeded quota for GPUs")
    fleet.store.update_region_status("demo", "eu-west-1", report, None, now=long_ago)

    out = run(cli, "endpoints", "status", "demo")
    row = next(line for line in out.splitlines() if line.startswith("│ us-east-1"))
    assert [cell.strip() for cell in row.strip("│").split("│")][:5] == ["us-east-1", "running", "1", "1", "1"]
    assert "s ago" in row
    row = next(line for line in out.splitlines() if line.startswith("│ eu-west-1"))
    assert "error" in row and "3h ago (stale)" in row and "exceeded quota for GPUs" in row
    for column in ("READY", "UPDATED", "DESIRED", "LAST SYNC", "MESSAGE"):
        assert column in out
    assert "TOKEN=***" in out and SECRET not in out
    assert "no kubeconfig for eu-west-1 (set KUBECONFIG_EU_WEST_1" in out

    shown = json.loads(run(cli, "endpoints", "status", "demo", "--output", "json"))
    alias = json.loads(run(cli, "endpoints", "status", "demo", "--json"))
    assert without_ages(shown) == without_ages(alias)
    assert shown["spec"]["env"] == {"TOKEN": "***"}
    assert shown["region_status"][REGION]["replicas_updated"] == 1, "the fleet writes rollout progress"
    regions = {r["region"]: r for r in shown["regions"]}
    assert (regions[REGION]["ready"], regions[REGION]["updated"], regions[REGION]["desired"]) == (1, 1, 1)
    assert regions["eu-west-1"]["stale"] and regions["eu-west-1"]["age_seconds"] > 3 * 3600 - 60
    assert SECRET not in json.dumps(shown)


def test_env_values_are_redacted_in_list_and_render_unless_asked(cli: CliRunner, fleet: Fleet) -> None:
    deploy(cli, REGION)
    assert SECRET not in run(cli, "endpoints", "list", "--json")
    assert json.loads(run(cli, "endpoints", "list", "--json"))[0]["spec"]["env"] == {"TOKEN": "***"}
    rendered = run(cli, "render", "demo", "--region", REGION)
    assert SECRET not in rendered and "value: '***'" in rendered
    assert f"value: {SECRET}" in run(cli, "render", "demo", "--region", REGION, "--show-secrets")
    assert "render needs a region: pass --region R" in run(cli, "render", "demo", code=1)


# ---- Events ----------------------------------------------------------------------------------------


class EventsServer:
    """Answers GET .../events with ``items``, and remembers the queries it got."""

    def __init__(self, items: list[dict[str, Any]], status: int = 200) -> None:
        self.queries: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                outer.queries.append({"path": [url.path], **urllib.parse.parse_qs(url.query)})
                body = json.dumps({"kind": "EventList", "apiVersion": "events.k8s.io/v1", "items": items})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def kubeconfig(self, path: Path) -> Path:
        return self.kubeconfig_for(f"http://127.0.0.1:{self.server.server_address[1]}", path)

    @staticmethod
    def kubeconfig_for(url: str, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        }))  # fmt: skip
        return path


@pytest.fixture()
def events_server() -> Iterator[EventsServer]:
    now = datetime.now(UTC)

    def event(minutes: int, reason: str, note: str, name: str = "demo", **extra: Any) -> dict[str, Any]:
        stamp = (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "metadata": {"name": f"e{minutes}", "namespace": "gco-inference"},
            "eventTime": stamp,
            "type": "Warning" if reason.startswith("Failed") else "Normal",
            "reason": reason,
            "note": note,
            "regarding": {"kind": "Deployment", "name": name},
            **extra,
        }

    items = [event(m, "Applied", f"applied change {m}") for m in (9, 8, 7, 6, 5, 4)]
    items.append(event(3, "FailedApply", "422 Invalid: spec.replicas", series={"count": 4}))
    items.append(event(1, "Applied", "someone else's", name="other"))
    server = EventsServer(items)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def record_event(cluster: Cluster, regarding: str, reason: str, note: str) -> None:
    """An ``events.k8s.io/v1`` Event about Deployment ``regarding``, created through the API."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{regarding}.{uuid.uuid4().hex[:12]}", "namespace": "gco-inference"},
        "eventTime": stamp,
        "reportingController": "tests",
        "reportingInstance": "tests-1",
        "action": "Apply",
        "reason": reason,
        "note": note,
        "type": "Normal",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": regarding,
                      "namespace": "gco-inference"},
    }  # fmt: skip
    client.EventsV1Api(cluster.api_client).create_namespaced_event("gco-inference", body)


def test_last_events_of_the_deployment_per_region(
    cli: CliRunner, fleet: Fleet, cluster: Cluster, events_server: EventsServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    deploy(cli, REGION, "eu-west-1", "ap-south-1")
    record_event(cluster, "demo", "Applied", "applied Deployment/demo (image nginx:1.27)")
    record_event(cluster, "other", "Applied", "not about demo")
    monkeypatch.setenv("REGION", REGION)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("KUBECONFIG_EU_WEST_1", str(events_server.kubeconfig(tmp_path / "eu.yaml")))
    unreachable = EventsServer.kubeconfig_for(f"http://127.0.0.1:{free_port()}", tmp_path / "ap.yaml")
    monkeypatch.setenv("KUBECONFIG_AP_SOUTH_1", str(unreachable))
    out = run(cli, "endpoints", "status", "demo")
    east = out[out.index("Events in us-east-1:") : out.index("Events in eu-west-1:")]
    assert "Applied" in east and "applied Deployment/demo (image nginx:1.27)" in east, out
    assert "not about demo" not in out
    europe = out[out.index("Events in eu-west-1:") : out.index("Events in ap-south-1:")]
    shown = [line for line in europe.splitlines() if "Applied" in line or "FailedApply" in line]
    assert len(shown) == 5, "the last five, oldest first"
    assert "applied change 9" not in out and "someone else's" not in out
    assert "FailedApply" in shown[-1] and "(x4)" in shown[-1] and "3m ago" in shown[-1]
    (query,) = events_server.queries
    assert query["path"] == ["/apis/events.k8s.io/v1/namespaces/gco-inference/events"]
    assert query["fieldSelector"] == ["regarding.kind=Deployment,regarding.name=demo"]
    assert "Events of ap-south-1 not readable: cannot reach its API server" in out, "a note for it"
    assert "│ ap-south-1" in out, "and the rest still shows"
    assert "Events" not in run(cli, "endpoints", "status", "demo", "--no-events")


# ---- --watch -------------------------------------------------------------------------------------


def test_watch_until_running_shows_the_progress(cli: CliRunner, fleet: Fleet) -> None:
    deploy(cli, REGION)
    worker = threading.Thread(target=converge, args=(fleet, lambda: state(fleet) == "running", 20.0))
    worker.start()
    try:
        out = run(cli, "endpoints", "status", "demo", "--watch", "--until", "running", "--timeout", "30",
                  "--interval", "0.2", "--no-events")  # fmt: skip
    finally:
        worker.join()
    blocks = out.split("--- ")[1:]
    assert len(blocks) >= 2, "a block per change: not running yet, then running"
    rows = [next(line for line in block.splitlines() if line.startswith("│ us-east-1")) for block in blocks]
    assert "running" not in rows[0] and "running" in rows[-1], rows


def test_watch_times_out_when_a_region_never_runs(cli: CliRunner, fleet: Fleet) -> None:
    deploy(cli, REGION, "eu-west-1")
    run_cycle(fleet)
    out = run(cli, "endpoints", "status", "demo", "--until", "running", "--timeout", "0.5",
              "--interval", "0.2", "--no-events", code=1)  # fmt: skip
    assert "not every target region reports 'running' after 0.5s" in out


def test_watch_json_is_one_document_per_change_and_a_purge_ends_until_deleted(
    cli: CliRunner, fleet: Fleet
) -> None:
    deploy(cli, REGION)
    out = run(cli, "endpoints", "status", "demo", "-w", "-o", "json", "--timeout", "0.5", "--interval", "0.2",
              "--no-events")  # fmt: skip
    documents = [json.loads(line) for line in out.splitlines()]
    assert len(documents) == 1, "nothing changed: printed once"
    assert documents[0]["spec"]["env"] == {"TOKEN": "***"}
    fleet.store.client.delete_item(TableName=fleet.store.table_name, Key={"endpoint_name": {"S": "demo"}})
    out = run(cli, "endpoints", "status", "demo", "--until", "deleted", "--timeout", "5", "--no-events")
    assert "not found (purged, or not created yet)" in out
