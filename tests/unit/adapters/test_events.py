"""The pure parts of the Event recorder: one type and action per reason, deterministic valid names, the
1 kB note limit on character boundaries, MicroTime, and bodies valid against Kubernetes' strict schema."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from gco_tasks.adapters.events import (
    NOTE_LIMIT_BYTES,
    REASONS,
    EventReason,
    Regarding,
    event_body,
    event_key,
    event_name,
    micro_time,
    series_patch,
    truncate_note,
)

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LONGEST = "a" * 53 + "-canary"
REGARDING = Regarding("my-llm", "gco-inference", uid="0b0e4a34-6f1e-4d8e-9d55-0f6c7d2f1a11")


def test_every_reason_has_a_type_and_an_action() -> None:
    assert set(REASONS) == set(EventReason)
    for reason, kind in REASONS.items():
        assert re.fullmatch(r"[A-Z][A-Za-z]+", reason.value), reason
        assert kind.type in {"Normal", "Warning"}
        assert 0 < len(kind.action) <= 128 and re.fullmatch(r"[A-Z][A-Za-z]+", kind.action)
    failures = {r for r, k in REASONS.items() if k.type == "Warning"}
    assert {EventReason.APPLY_FAILED, EventReason.INVALID_SPEC, EventReason.ROLLOUT_STUCK} <= failures
    assert EventReason.APPLIED not in failures


def test_names_are_deterministic_valid_and_distinct() -> None:
    key = event_key(REGARDING, EventReason.APPLIED, "note")
    assert key == event_key(REGARDING, EventReason.APPLIED, "note")
    assert key == event_key(Regarding("my-llm", "gco-inference"), EventReason.APPLIED, "note"), "uid aside"
    assert key != event_key(REGARDING, EventReason.APPLIED, "other note")
    assert key != event_key(REGARDING, EventReason.DELETED, "note")
    assert key != event_key(Regarding("my-llm-canary", "gco-inference"), EventReason.APPLIED, "note")
    for name in ("my-llm", LONGEST):
        built = event_name(Regarding(name, "gco-inference"), key)
        assert SUBDOMAIN.match(built) and len(built) <= 253
        assert built.startswith(f"{name}.")


@pytest.mark.parametrize(
    ("note", "kept"),
    [("short", "short"), ("x" * NOTE_LIMIT_BYTES, "x" * NOTE_LIMIT_BYTES)],
)
def test_notes_within_the_limit_are_kept(note: str, kept: str) -> None:
    assert truncate_note(note) == kept


def test_long_notes_are_cut_on_a_character_boundary() -> None:
    for filler in ("x", "é", "€", "🙂"):
        note = filler * 1500
        cut = truncate_note(note)
        assert len(cut.encode()) <= NOTE_LIMIT_BYTES
        assert cut.endswith("...") and cut[:-3] == filler * len(cut[:-3])
        assert len(cut.encode()) > NOTE_LIMIT_BYTES - 8, "nothing lost but the last partial character"


def test_micro_time_has_six_fraction_digits_even_on_a_whole_second() -> None:
    assert micro_time(1_800_000_000.25) == "2027-01-15T08:00:00.250000Z"
    assert micro_time(1_800_000_000.0) == "2027-01-15T08:00:00.000001Z"


def test_bodies_are_valid_events_k8s_io_v1_events() -> None:
    for reason in EventReason:
        body = event_body(REGARDING, reason, "a note", "my-llm.0123456789abcdef", "pod-" + "x" * 200, 1.8e9)
        kubernetes_validate.validate(body, "1.30.0", strict=True)
        assert body["type"] == REASONS[reason].type and body["action"] == REASONS[reason].action
        assert len(body["reportingInstance"]) == 128
        assert body["regarding"]["uid"] == REGARDING.uid
    without_uid = event_body(Regarding("x", "ns"), EventReason.APPLIED, "n", "x.1", "w", 1.8e9)
    assert "uid" not in without_uid["regarding"]


def test_a_series_counts_at_least_two() -> None:
    assert series_patch(1, 1.8e9) == {
        "series": {"count": 2, "lastObservedTime": "2027-01-15T08:00:00.000001Z"}
    }
    assert series_patch(7, 1.8e9 + 0.5)["series"]["count"] == 7
