"""``reconciler.reconcile_batch``: several endpoints' reconciles with their records read in one call,
each one's lock held while its record is read, and each one's failure its own."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from gco_tasks.core.errors import PermanentError, TransientError
from gco_tasks.core.hint import Hint
from gco_tasks.core.results import ReconcileResult, ResultKind
from gco_tasks.flows.reconciler import ReconcileFlow, reconcile_batch

from .fakes import FakePorts
from .test_fake_ports import record, region_state

NOW = 1_700_000_000.0


class Reads:
    """Counts the store's reads, and checks that each record is read under its endpoint's lock."""

    def __init__(
        self, ports: FakePorts, unprocessed: Iterable[str] = (), fail: Exception | None = None
    ) -> None:
        self.ports, self.unprocessed, self.fail = ports, set(unprocessed), fail
        self.batches: list[list[str]] = []
        self.alone: list[str] = []
        self._get_item, self._get_items = ports.store.get_item, ports.store.get_items
        ports.store.get_item = self.get_item  # type: ignore[method-assign]
        ports.store.get_items = self.get_items  # type: ignore[method-assign]

    def _locked(self, name: str) -> None:
        assert f"endpoint:{name}" in self.ports.state.held, f"{name}'s record read without its lock"

    def get_items(self, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        names = list(names)
        self.batches.append(names)
        for name in names:
            self._locked(name)
        if self.fail is not None:
            raise self.fail
        found = self._get_items(names)
        return {name: item for name, item in found.items() if name not in self.unprocessed}

    def get_item(self, name: str) -> dict[str, Any] | None:
        self._locked(name)
        self.alone.append(name)
        return self._get_item(name)


def plain_run(ports: FakePorts) -> Any:
    def run(flow: ReconcileFlow, name: str, hint: Hint | None) -> ReconcileResult:
        return flow(ports, name, hint)  # type: ignore[arg-type]

    return run


def batch(ports: FakePorts, names: list[str], run: Any = None) -> dict[str, ReconcileResult | Exception]:
    answers = reconcile_batch(ports, [(n, None) for n in names], run or plain_run(ports), now=NOW)  # type: ignore[arg-type]
    assert [name for name, _ in answers] == list(dict.fromkeys(names)), "one answer each, in order"
    assert ports.state.held == set(), "every lock released"
    return dict(answers)


def test_a_batch_reads_every_record_in_one_call_under_the_locks_and_creates_each_endpoint() -> None:
    ports = FakePorts.create()
    names = ["a", "b", "c"]
    for name in names:
        ports.store.put(record(name))
    reads = Reads(ports)
    answers = batch(ports, [*names, "b"])  # a name twice is reconciled once
    assert reads.batches == [names] and reads.alone == []
    for name in names:
        answer = answers[name]
        assert isinstance(answer, ReconcileResult) and answer.kind is ResultKind.APPLIED, answer
        assert region_state(ports, name) == "creating"
    assert {n for kind, n in ports.cluster.objects if kind == "Deployment"} == set(names)


def test_a_held_lock_skips_that_endpoint_alone_and_its_record_is_not_read() -> None:
    ports = FakePorts.create()
    for name in ("a", "b"):
        ports.store.put(record(name))
    reads = Reads(ports)
    with ports.state.endpoint_lock("a", ttl_seconds=30):
        answers = reconcile_batch(ports, [("a", None), ("b", None)], plain_run(ports), now=NOW)  # type: ignore[arg-type]
    assert reads.batches == [["b"]]
    skipped, done = dict(answers)["a"], dict(answers)["b"]
    assert isinstance(skipped, ReconcileResult) and skipped.kind is ResultKind.SKIPPED_LOCKED
    assert isinstance(done, ReconcileResult) and done.kind is ResultKind.APPLIED
    assert region_state(ports, "a") is None


def test_one_endpoints_failure_is_its_answer_and_the_others_go_on() -> None:
    ports = FakePorts.create()
    for name in ("a", "b", "c"):
        ports.store.put(record(name))
    inner = plain_run(ports)

    def run(flow: ReconcileFlow, name: str, hint: Hint | None) -> ReconcileResult:
        if name == "b":
            raise TransientError("the API server is away")
        result: ReconcileResult = inner(flow, name, hint)
        return result

    answers = batch(ports, ["a", "b", "c"], run)
    assert isinstance(answers["b"], TransientError)
    assert [region_state(ports, n) for n in ("a", "b", "c")] == ["creating", None, "creating"]


@pytest.mark.parametrize(
    "fail",
    [None, TransientError("throttled"), PermanentError("AccessDenied: no dynamodb:BatchGetItem")],
    ids=["left unprocessed", "the batch read throttled", "a policy without BatchGetItem"],
)
def test_a_record_the_batch_read_did_not_bring_is_read_alone(fail: Exception | None) -> None:
    ports = FakePorts.create()
    for name in ("a", "b"):
        ports.store.put(record(name))
    reads = Reads(ports, unprocessed={"b"}, fail=fail)
    answers = batch(ports, ["a", "b"])
    assert reads.alone == (["a", "b"] if fail is not None else ["b"])
    assert all(isinstance(a, ReconcileResult) and a.kind is ResultKind.APPLIED for a in answers.values())


def test_a_name_without_a_record_and_a_name_the_cluster_cannot_have_are_answered_apart() -> None:
    ports = FakePorts.create()
    ports.store.put(record("a"))
    ports.store.put({**record("a"), "endpoint_name": "Bad_Name"})
    reads = Reads(ports)
    answers = batch(ports, ["a", "gone", "Bad_Name"])
    assert reads.batches == [["a", "gone"]], "a name no label selector can hold is not looked for"
    gone, bad = answers["gone"], answers["Bad_Name"]
    assert isinstance(gone, ReconcileResult) and gone.kind is ResultKind.NOOP, gone
    assert isinstance(bad, ReconcileResult) and bad.kind is ResultKind.INVALID and bad.state == "error"
    assert region_state(ports, "Bad_Name") == "error"
