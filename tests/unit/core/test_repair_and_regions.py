"""The pure parts behind the CLI's door: region names and guesses, repair paths and plans, redaction."""

from __future__ import annotations

import pytest

from gco_tasks.core.record_repair import MISSING, PathError, parse_path, plan_repair, shown
from gco_tasks.core.redaction import redact_item, redact_objects
from gco_tasks.core.regions import AWS_COMMERCIAL_REGIONS, closest_region, known_regions, region_problem


def test_known_regions_default_to_aws_commercial_and_read_the_setting() -> None:
    assert known_regions("") == AWS_COMMERCIAL_REGIONS
    assert known_regions(" us-east-1 ,, eu-west-1,us-east-1") == ("us-east-1", "eu-west-1")


@pytest.mark.parametrize(
    ("typo", "guess"),
    [
        ("us-est-1", "us-east-1"),
        ("eu-wset-1", "eu-west-1"),
        ("ap-southeast2", "ap-southeast-2"),
        ("zz", None),
    ],
)
def test_closest_region(typo: str, guess: str | None) -> None:
    assert closest_region(typo, AWS_COMMERCIAL_REGIONS) == guess


def test_region_problem_names_the_fix() -> None:
    assert region_problem("us-east-1", AWS_COMMERCIAL_REGIONS) is None
    assert region_problem("mx-south-9", AWS_COMMERCIAL_REGIONS, allow_unknown=True) is None
    message = region_problem("us-est-1", ["us-east-1", "eu-west-1"]) or ""
    assert message == (
        "unknown region 'us-est-1'; known regions: us-east-1, eu-west-1; did you mean 'us-east-1'? "
        "(add it to KNOWN_REGIONS or pass --allow-unknown-region for a new region)"
    )
    assert "invalid region" in (region_problem("gco.us-east-1", AWS_COMMERCIAL_REGIONS, True) or "")


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("spec.port", ("spec", "port")),
        ("spec.autoscaling.metrics[0].type", ("spec", "autoscaling", "metrics", 0, "type")),
        ("labels[example.com/team]", ("labels", "example.com/team")),
        ("region_status.us-east-1", ("region_status", "us-east-1")),
    ],
)
def test_paths(path: str, loc: tuple[object, ...]) -> None:
    assert parse_path(path) == loc


@pytest.mark.parametrize("path", ["", ".", "spec..port", "spec.", "a[0]b", "a[]", "a]"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(PathError, match="cannot read the path"):
        parse_path(path)


def base(**spec: object) -> dict[str, object]:
    return {"endpoint_name": "x", "target_regions": ["us-east-1"], "spec": {"image": "n:1", **spec}}


def test_a_valid_record_has_nothing_to_repair() -> None:
    plan = plan_repair(base(), known=AWS_COMMERCIAL_REGIONS)
    assert plan.changes == [] and plan.unresolved == []


def test_two_bad_metrics_are_both_dropped_and_the_shift_is_not_a_change() -> None:
    metrics = [{"type": "gpu"}, {"type": "tpu"}, {"type": "memory", "target": 60}]
    plan = plan_repair(base(autoscaling={"enabled": True, "metrics": metrics}), known=AWS_COMMERCIAL_REGIONS)
    assert plan.unresolved == []
    assert plan.item["spec"]["autoscaling"]["metrics"] == [{"type": "memory", "target": 60}]
    assert [c.after for c in plan.changes] == [MISSING, MISSING]


def test_unsafe_fields_are_left_to_the_operator() -> None:
    plan = plan_repair(base(env={"1BAD": "x"}, canary={"image": "c:1", "weight": 150}))
    paths = {path for path, _ in plan.unresolved}
    assert paths == {"spec.env.1BAD", "spec.canary.weight"}
    assert all("--set" in problem for _, problem in plan.unresolved)


def test_env_values_are_never_shown() -> None:
    assert shown("spec.env.TOKEN", "abc") == '"***"'
    assert shown("spec.env", {"TOKEN": "abc"}) == '{"TOKEN":"***"}'
    assert "abc" not in shown("spec", {"image": "n", "env": {"TOKEN": "abc"}})
    assert shown("spec.env", ["TOKEN=abc"]) == '"***"', "a malformed env is hidden whole"
    assert redact_item({"spec": {"env": ["TOKEN=abc"]}}) == {"spec": {"env": "***"}}
    item = redact_item({"spec": {"env": {"T": "abc"}, "canary": {"image": "c", "env": {"U": "d"}}}})
    assert item == {"spec": {"env": {"T": "***"}, "canary": {"image": "c", "env": {"U": "***"}}}}
    deployment = {
        "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [{"env": [{"name": "T", "value": "abc"},
                                                               {"name": "S", "valueFrom": {}}]}]}}},
    }  # fmt: skip
    (redacted,) = redact_objects([deployment])
    assert redacted["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "T", "value": "***"},
        {"name": "S", "valueFrom": {}},
    ]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "abc", "copied"
