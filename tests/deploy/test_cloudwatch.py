"""k8s/cloudwatch: the CloudWatch path beside the Prometheus one.

The agent's scrape configuration passes ``promtool check config``, and its relabel rules run in a real
Prometheus (file-based discovery standing in for the pods' Kubernetes metadata, taken from the rendered
overlay): worker and beat are scraped on their annotated port with ``job="gco-tasks"`` and their
``component``, Flower is not. The alarms (a CloudFormation template) pass cfn-lint, cover the critical
alerts with the PrometheusRule's thresholds and durations, and alarm only on metrics and dimension sets
the agent's ``emf_processor`` publishes, of metrics the fleet exports (never a histogram, which the
agent drops).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gco_tasks.adapters import metrics

from .test_k8s_manifests import Region, _kubectl
from .test_monitoring import SCRAPE_TIME, rules_spec

REPO = Path(__file__).resolve().parents[2]
CLOUDWATCH = REPO / "k8s" / "cloudwatch"
#: The alerts the CloudWatch path must cover (critical, and endpoints in error, which the issue asked for).
REQUIRED = {"GcoFanOutStalled", "GcoNoWorkerUp", "GcoNoBeatUp", "GcoKubeForbidden", "GcoEndpointsInError"}

Obj = dict[str, Any]


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub ...) read as {"Ref": ...} / {"Fn::Sub": ...}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Obj:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node)}
    return {name: loader.construct_mapping(node)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _intrinsic)


@functools.cache
def template() -> Obj:
    loaded: Obj = yaml.load((CLOUDWATCH / "alarms.yaml").read_text(), Loader=_CfnLoader)
    return loaded


def alarms() -> dict[str, Obj]:
    """Prometheus alert name -> the alarm's Properties."""
    found = {}
    for resource in template()["Resources"].values():
        assert resource["Type"] == "AWS::CloudWatch::Alarm"
        found[resource["Metadata"]["PrometheusAlert"]] = resource["Properties"]
    return found


def rules() -> dict[str, Obj]:
    return {rule["alert"]: rule for group in rules_spec()["groups"] for rule in group["rules"]}


def agent_config() -> Obj:
    config: Obj = json.loads((CLOUDWATCH / "cwagentconfig.json").read_text())
    return config


def _seconds(duration: str) -> int:
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def _region_dimension(dimensions: list[Obj]) -> dict[str, Any]:
    found = {d["Name"]: d["Value"] for d in dimensions}
    assert found.pop("region") == {"Ref": "AWS::Region"}, "the stack's region is the fleet's"
    return found


def metric_stats(alarm: Obj) -> list[tuple[str, dict[str, Any], int, str]]:
    """(metric, dimensions but region, period, statistic) of every metric the alarm reads."""
    if "Metrics" not in alarm:
        dims = _region_dimension(alarm["Dimensions"])
        return [(alarm["MetricName"], dims, alarm["Period"], alarm["Statistic"])]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            dims = _region_dimension(stat["Metric"]["Dimensions"])
            assert stat["Metric"]["Namespace"] == {"Ref": "MetricNamespace"}
            found.append((stat["Metric"]["MetricName"], dims, stat["Period"], stat["Stat"]))
    assert sum(bool(query["ReturnData"]) for query in alarm["Metrics"]) == 1
    return found


# --------------------------------------------------------------------------------------------------
# The alarms
# --------------------------------------------------------------------------------------------------


def test_alarms_pass_cfn_lint() -> None:
    """cfn-lint checks the template against AWS's own CloudFormation resource schemas."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(CLOUDWATCH / "alarms.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_critical_alert_has_an_alarm_with_its_runbook() -> None:
    found, known = alarms(), rules()
    critical = {name for name, rule in known.items() if rule["labels"]["severity"] == "critical"}
    assert set(found) >= REQUIRED, REQUIRED - set(found)
    # GcoFanOutNeverRan is the fan-out alarm's missing data (breaching): no exporter reports a fan-out.
    assert critical - set(found) == {"GcoFanOutNeverRan"}
    assert found["GcoFanOutStalled"]["TreatMissingData"] == "breaching"
    for name, alarm in found.items():
        assert name in known, name
        assert f"Runbook: docs/operations.md, {name}." in " ".join(alarm["AlarmDescription"].split())
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopicArn"}], name


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_alarm_has_the_prometheus_rules_threshold_and_duration(name: str) -> None:
    """Same comparison and threshold as the rule's expression, and as long: the rule's `for` (every
    datapoint of that many minutes breaching), or, for a rule without one, its range."""
    alarm, rule = alarms()[name], rules()[name]
    expr = " ".join(rule["expr"].split())
    stats = metric_stats(alarm)
    (period,) = {period for _, _, period, _ in stats}
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"], "every datapoint breaches, as `for`"
    if "for" in rule:
        assert alarm["EvaluationPeriods"] * period == _seconds(rule["for"])
    else:
        (window,) = re.findall(r"\[(\d+[smh])\]", expr)
        assert (alarm["EvaluationPeriods"], period) == (1, _seconds(window))

    absent = re.fullmatch(r'absent\(up\{job="gco-tasks", component="(\w+)"\} == 1\)', expr)
    if absent:
        # No pod of the component up <-> no sample of a series every one of its exporters reports.
        ((metric, dims, _, stat),) = stats
        assert (stat, dims, metric in SCRAPE_TIME) == ("SampleCount", {"component": absent.group(1)}, True)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
        assert alarm["TreatMissingData"] == "breaching"
        return
    threshold = float(re.findall(r">\s*(\d+(?:\.\d+)?)", expr)[-1])
    assert (alarm["ComparisonOperator"], float(alarm["Threshold"])) == ("GreaterThanThreshold", threshold)
    # The rule's label matchers are the alarm's dimensions.
    rule_metrics = set(re.findall(r"\b(gco_[a-z_]+)\b", expr))
    assert {metric for metric, _, _, _ in stats} == rule_metrics
    for matcher, values in re.findall(r'(\w+)=~?"([^"]+)"', expr):
        wanted = set(values.split("|"))
        assert {dims.get(matcher) for _, dims, _, _ in stats if matcher in dims} == wanted, matcher


def test_the_fan_out_alarm_counts_reconcile_intervals() -> None:
    """The rule compares the time since the last fan-out with 3 x gco_reconcile_interval_seconds; the
    alarm's expression divides that age by the interval, and is what it returns."""
    alarm = alarms()["GcoFanOutStalled"]
    (expression,) = [query for query in alarm["Metrics"] if "Expression" in query]
    assert expression["ReturnData"] is True
    ids = {
        query["Id"]: query["MetricStat"]["Metric"]["MetricName"]
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }
    assert expression["Expression"] == "(EPOCH(last) + PERIOD(last) - last) / interval"
    assert ids == {"last": "gco_last_fanout_timestamp_seconds", "interval": "gco_reconcile_interval_seconds"}


def test_alarms_read_only_what_the_agent_publishes() -> None:
    """Each (metric, dimension names) an alarm reads is declared by the agent's emf_processor for the
    scrape job, in the namespace the template defaults to; every such metric is the fleet's, and no
    histogram (the agent drops them)."""
    emf = agent_config()["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert template()["Parameters"]["MetricNamespace"]["Default"] == emf["metric_namespace"]
    published = set()
    for declaration in emf["metric_declaration"]:
        assert declaration["source_labels"] == ["job"]
        assert re.fullmatch(declaration["label_matcher"], "gco-tasks")
        for selector in declaration["metric_selectors"]:
            names = [name for name in metrics.metric_names() | SCRAPE_TIME if re.search(selector, name)]
            assert names, f"{selector} selects no metric of the fleet"
            for dims in declaration["dimensions"]:
                published |= {(name, frozenset(dims)) for name in names}
    histograms = {name for name in metrics.metric_names() if name.endswith(("_bucket", "_sum", "_count"))}
    for name, alarm in alarms().items():
        for metric, dims, _, _ in metric_stats(alarm):
            assert (metric, frozenset({"region", *dims})) in published, (name, metric, dims)
            assert metric not in histograms


# --------------------------------------------------------------------------------------------------
# The agent's configuration
# --------------------------------------------------------------------------------------------------


@functools.cache
def rendered() -> dict[str, Obj]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(CLOUDWATCH)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return {obj["metadata"]["name"]: obj for obj in yaml.safe_load_all(result.stdout) if obj}


def test_the_kustomization_ships_the_agents_two_config_maps() -> None:
    objects = rendered()
    assert set(objects) == {"prometheus-config", "prometheus-cwagentconfig"}
    for obj in objects.values():
        assert obj["kind"] == "ConfigMap" and obj["metadata"]["namespace"] == "amazon-cloudwatch"
    assert objects["prometheus-config"]["data"] == {
        "prometheus.yaml": (CLOUDWATCH / "prometheus.yaml").read_text()
    }
    agent = json.loads(objects["prometheus-cwagentconfig"]["data"]["cwagentconfig.json"])
    prometheus = agent["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["prometheus_config_path"] == "/etc/prometheusconfig/prometheus.yaml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is required: install Debian's `prometheus` package (`make system-deps`)")
    return path


def _with_file_discovery(targets: Path) -> Obj:
    """The agent's scrape configuration with file discovery in place of Kubernetes' (Debian's Prometheus
    is built without Kubernetes discovery); the Kubernetes discovery it replaces is checked here."""
    config: Obj = yaml.safe_load((CLOUDWATCH / "prometheus.yaml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["gco-system"]}}]
    del job["kubernetes_sd_configs"]
    job["file_sd_configs"] = [{"files": [str(targets)], "refresh_interval": "1s"}]
    return config


def test_the_scrape_configuration_passes_promtool(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yaml"
    config.write_text(yaml.safe_dump(_with_file_discovery(tmp_path / "targets.json")))
    result = subprocess.run([_promtool(), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _meta_labels(region: Region, component: str, address: str) -> dict[str, str]:
    """The labels Kubernetes discovery gives a pod of the rendered overlay (role: pod)."""
    template_meta = region.deployment(component)["spec"]["template"]["metadata"]
    labels = {"__address__": address, "__meta_kubernetes_namespace": "gco-system"}
    labels["__meta_kubernetes_pod_name"] = f"gco-tasks-{component}-0"
    for key, value in template_meta["labels"].items():
        labels["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    for key, value in template_meta.get("annotations", {}).items():
        labels["__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)] = value
    return labels


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture()
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real Prometheus running the agent's scrape job with file discovery in place of Kubernetes'."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is required: install Debian's `prometheus` package (`make system-deps`)")
    targets = tmp_path / "targets.json"
    config = _with_file_discovery(targets)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
    ]
    command += [f"--web.listen-address=127.0.0.1:{port}"]
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", targets
    finally:
        process.terminate()
        process.wait(timeout=30)


def _targets(url: str) -> Obj:
    with urllib.request.urlopen(f"{url}/api/v1/targets?state=any", timeout=5) as answer:
        data: Obj = json.load(answer)["data"]
        return data


def test_the_relabel_rules_keep_worker_and_beat_on_their_metrics_port(prometheus: tuple[str, Path]) -> None:
    url, targets = prometheus
    region = Region("us-east-1")
    groups = [
        {"targets": [f"10.0.0.{n}:{port}"], "labels": _meta_labels(region, component, f"10.0.0.{n}:{port}")}
        for n, (component, port) in enumerate((("worker", 9808), ("beat", 9808), ("flower", 5555)), start=1)
    ]
    # The pods' container port is the address Kubernetes discovery gives; drop it to check that the
    # annotation, not the discovered port, decides where the agent scrapes.
    groups[0]["labels"]["__address__"] = groups[0]["targets"][0] = "10.0.0.1"
    targets.write_text(json.dumps(groups))
    deadline = time.monotonic() + 60
    data: Obj = {}
    while time.monotonic() < deadline:
        try:
            data = _targets(url)
        except OSError:
            data = {}
        if len(data.get("activeTargets", [])) + len(data.get("droppedTargets", [])) >= 3:
            break
        time.sleep(0.5)
    active = {target["labels"]["component"]: target for target in data.get("activeTargets", [])}
    assert set(active) == {"worker", "beat"}, data
    for component, target in active.items():
        assert target["labels"]["job"] == "gco-tasks"
        assert target["labels"]["pod"] == f"gco-tasks-{component}-0"
        assert target["scrapeUrl"].endswith(":9808/metrics"), target["scrapeUrl"]
    dropped = [target["discoveredLabels"] for target in data["droppedTargets"]]
    assert [labels["__meta_kubernetes_pod_label_app_kubernetes_io_component"] for labels in dropped] == [
        "flower"
    ]
