"""Label and field selectors of the sandbox API server (pure)."""

from __future__ import annotations

import pytest

from gco_sandbox.selectors import (
    SelectorError,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "llm", "tier": "gpu", "gco.io/type": "inference"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=llm", True),
        ("app==llm", True),
        ("app=other", False),
        ("app!=other", True),
        ("missing!=x", True),
        ("tier in (gpu, cpu)", True),
        ("tier in (cpu)", False),
        ("tier notin (cpu)", True),
        ("missing notin (cpu)", True),
        ("tier notin (gpu)", False),
        ("gco.io/type", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=llm,gco.io/type=inference,tier in (gpu,cpu),!legacy", True),
        ("app=llm,tier=cpu", False),
    ],
)
def test_label_selector(selector: str, expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), LABELS) is expected


def test_label_selector_on_unlabelled_object() -> None:
    assert labels_match(parse_label_selector("!app"), None)
    assert not labels_match(parse_label_selector("app"), None)


@pytest.mark.parametrize("selector", ["app in (a", "=x", "app=has space", "-bad-=x"])
def test_malformed_label_selectors_are_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_field_selector_by_name_and_namespace() -> None:
    obj = {"metadata": {"name": "a", "namespace": "gco-inference"}}
    assert fields_match(parse_field_selector("metadata.name=a"), obj)
    assert fields_match(parse_field_selector("metadata.name==a,metadata.namespace=gco-inference"), obj)
    assert not fields_match(parse_field_selector("metadata.name!=a"), obj)
    assert not fields_match(parse_field_selector("metadata.name=b"), obj)


def test_unsupported_field_is_refused() -> None:
    with pytest.raises(SelectorError, match="not supported"):
        parse_field_selector("spec.replicas=1")
