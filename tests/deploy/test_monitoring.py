"""k8s/components/monitoring: it renders into an overlay (k8s/examples/us-east-1-with-monitoring) adding
only its own objects; the PodMonitors scrape ports the pods really expose and the NetworkPolicies admit;
the alert rules pass ``promtool check rules`` and ``promtool test rules`` (tests/deploy/monitoring/
alerts.test.yaml: every alert fires in one case and stays quiet in another); the Grafana dashboard is a
well-formed dashboard whose every query parses (promtool) and names only metrics that exist: those of
gco_tasks/adapters/metrics.py and the exporter, Flower's, and Prometheus' ``up``.

promtool is required (Debian's ``prometheus`` package, installed by ``make system-deps``): without it
these tests fail, they never skip.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gco_tasks.adapters import metrics

from .docs import headings
from .test_k8s_manifests import FLEET_NS, _kubectl, _matches, _render

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "k8s" / "components" / "monitoring"
EXAMPLE = REPO / "k8s" / "examples" / "us-east-1-with-monitoring"
DASHBOARD = COMPONENT / "dashboards" / "gco-tasks.json"
ALERT_TESTS = Path(__file__).parent / "monitoring" / "alerts.test.yaml"

#: Flower's metrics (flower/events.py), by the sample names Prometheus stores.
FLOWER_METRICS = {
    "flower_events_total",
    "flower_task_runtime_seconds_bucket",
    "flower_task_runtime_seconds_sum",
    "flower_task_runtime_seconds_count",
    "flower_task_prefetch_time_seconds",
    "flower_worker_prefetched_tasks",
    "flower_worker_online",
    "flower_worker_number_of_currently_executing_tasks",
}
#: Series computed by the exporter at scrape time (gco_tasks/worker/exporter.py), and Prometheus' own.
SCRAPE_TIME = {"gco_queue_depth", "gco_reconcile_interval_seconds"}
PROMETHEUS = {"up"}
MONITORING_KINDS = {("PodMonitor", "gco-tasks"), ("PodMonitor", "gco-tasks-flower")}
MONITORING_KINDS |= {("PrometheusRule", "gco-tasks"), ("ConfigMap", "gco-tasks-grafana-dashboard")}

Obj = dict[str, Any]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is required to test the alert rules and the dashboard's queries and was not found: "
            "install Debian's `prometheus` package (`make system-deps` does: apt-get install prometheus)"
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def known_metrics() -> set[str]:
    return metrics.metric_names() | SCRAPE_TIME | FLOWER_METRICS | PROMETHEUS


# --------------------------------------------------------------------------- rendering


@functools.cache
def render_example() -> tuple[Obj, ...]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {EXAMPLE.relative_to(REPO)} failed:\n{result.stderr}"
    return tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj)


def by_key(objects: tuple[Obj, ...]) -> dict[tuple[str, str], Obj]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


def rules_spec() -> Obj:
    rule = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text())
    spec: Obj = rule["spec"]
    return spec


def test_the_component_adds_only_its_own_objects_to_an_overlay() -> None:
    plain, monitored = by_key(_render("us-east-1")), by_key(render_example())
    assert set(monitored) - set(plain) == MONITORING_KINDS
    assert set(plain) <= set(monitored)
    for key, obj in plain.items():
        assert monitored[key] == obj, f"{key} changed by the component"
    for key in MONITORING_KINDS:
        assert monitored[key]["metadata"]["namespace"] == FLEET_NS, key


def test_pod_monitors_scrape_ports_that_pods_expose_and_policies_admit() -> None:
    objects = by_key(render_example())
    deployments = {name: obj for (kind, name), obj in objects.items() if kind == "Deployment"}
    policies = [obj for (kind, _), obj in objects.items() if kind == "NetworkPolicy"]
    scraped: dict[str, tuple[str, str]] = {}
    for name in ("gco-tasks", "gco-tasks-flower"):
        spec = objects[("PodMonitor", name)]["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [FLEET_NS]}
        (endpoint,) = spec["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        relabels = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert relabels["job"]["replacement"] == name, "the alerts select on this job"
        for deployment in deployments.values():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if _selects(spec["selector"], labels):
                scraped[labels["app.kubernetes.io/component"]] = (name, endpoint["port"])
    assert scraped == {
        "worker": ("gco-tasks", "metrics"),
        "beat": ("gco-tasks", "metrics"),
        "flower": ("gco-tasks-flower", "http"),
    }
    for component, (_, port_name) in scraped.items():
        template = deployments[f"gco-tasks-{component}"]["spec"]["template"]
        (container,) = template["spec"]["containers"]
        (port,) = [p for p in container["ports"] if p["name"] == port_name]
        (policy,) = [
            p for p in policies if _matches(p["spec"]["podSelector"], template["metadata"]["labels"])
        ]
        admitted = {(p["protocol"], p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert ("TCP", port["containerPort"]) in admitted, f"{component}: Prometheus cannot reach it"


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_dashboard_ships_as_a_config_map_grafana_finds() -> None:
    config_map = by_key(render_example())[("ConfigMap", "gco-tasks-grafana-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["gco-tasks.json"]) == json.loads(DASHBOARD.read_text())


def test_the_prometheus_rule_wraps_a_plain_rules_file() -> None:
    rule = by_key(render_example())[("PrometheusRule", "gco-tasks")]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rules_spec()


# --------------------------------------------------------------------------- alert rules


def test_alert_rules_pass_promtools_checks_and_unit_tests(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_spec()))
    checked = run_promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = yaml.safe_load(ALERT_TESTS.read_text())
    cases["rule_files"] = [str(rules)]
    test_file = tmp_path / "alerts.test.yaml"
    test_file.write_text(yaml.safe_dump(cases))
    tested = run_promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_fires_in_a_case_and_stays_quiet_in_another() -> None:
    alerts = [rule["alert"] for group in rules_spec()["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) == len(set(alerts))
    fired, quiet = set(), set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fired == set(alerts), set(alerts) ^ fired
    assert quiet == set(alerts), set(alerts) ^ quiet


def test_alerts_have_a_severity_and_point_to_the_runbook() -> None:
    """Each alert names its runbook entry, a heading of docs/operations.md with the same severity."""
    runbook = {title for _, title in headings((REPO / "docs" / "operations.md").read_text())}
    for group in rules_spec()["groups"]:
        for rule in group["rules"]:
            severity = rule["labels"]["severity"]
            assert severity in {"warning", "critical"}, rule["alert"]
            assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
            description = " ".join(rule["annotations"]["description"].split())
            assert f"Runbook: docs/operations.md, {rule['alert']}." in description, rule["alert"]
            assert f"`{rule['alert']}` ({severity})" in runbook, f"no runbook entry for {rule['alert']}"


def test_alert_rules_name_only_metrics_that_exist() -> None:
    for group in rules_spec()["groups"]:
        for rule in group["rules"]:
            unknown = promql_metric_names(rule["expr"]) - known_metrics()
            assert not unknown, f"{rule['alert']}: {unknown}"


# --------------------------------------------------------------------------- the dashboard


def dashboard() -> Obj:
    loaded: Obj = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (f"{panel['id']}{target['refId']}", target["expr"])
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] == "gco-tasks" and board["title"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["region"]["definition"] == "label_values(gco_reconcile_interval_seconds, region)"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and ids
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat"} and panel["title"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['id']} overlaps another"
        occupied |= cells
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        assert all(target["expr"].strip() and "legendFormat" in target for target in panel["targets"])


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    recording = [
        {"record": f"dashboard:query_{ref}", "expr": grafana_to_promql(expr)}
        for ref, expr in dashboard_queries()
    ]
    rules = tmp_path / "dashboard-queries.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    checked = run_promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_queries_name_only_metrics_that_exist() -> None:
    known = known_metrics()
    used: set[str] = set()
    for ref, expr in dashboard_queries():
        names = promql_metric_names(expr)
        assert names, ref
        assert not names - known, f"query {ref}: {names - known} is not exported by anything"
        used |= names
    label_values = re.fullmatch(
        r"label_values\((\w+), \w+\)", dashboard()["templating"]["list"][1]["definition"]
    )
    assert label_values and label_values.group(1) in known
    wanted = {
        "gco_reconcile_total",  # rate by result
        "gco_reconcile_duration_seconds_bucket",  # p50/p99
        "gco_queue_depth",
        "gco_endpoints",  # by state
        "gco_kube_requests_total",  # by code
        "gco_last_fanout_timestamp_seconds",  # fan-out age
        "flower_events_total",
    }
    assert wanted <= used, wanted - used


def test_flowers_metrics_are_the_ones_flower_defines() -> None:
    import flower.events

    source = Path(flower.events.__file__).read_text()
    defined = set(re.findall(r"'(flower_[a-z_]+)'", source))
    stems = {re.sub(r"_(bucket|sum|count)$", "", name) for name in FLOWER_METRICS}
    assert stems == defined


# --------------------------------------------------------------------------- PromQL helpers


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values Prometheus accepts."""
    return expr.replace("$__rate_interval", "5m").replace("$region", ".*")


_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (in matchers and grouping clauses), numbers or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in re.finditer(r"\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group(0)
        if token[0].isdigit() or token in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(token)
    return names


def test_promql_metric_names_helper() -> None:
    expr = (
        'sum by (le, region) (rate(gco_x_bucket{region=~"$region", a="b(c)"}[5m])) / on (instance) '
        "group_left () max(up offset 10m) > 3 * 1e3 and time() - gco_y"
    )
    assert promql_metric_names(expr) == {"gco_x_bucket", "up", "gco_y"}
