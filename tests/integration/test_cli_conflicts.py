"""The CLI never fails on a conflict with the fleet's own writes: a conditional write that loses to the
fleet (its promotion of ``deploying`` to ``running``, its status reports) is re-read and re-applied;
one that loses to another user's change of the same intent fails and says what changed.

The fleet's write is put exactly between the CLI's read and its conditional write (the store's write
wrapped once), with a real fleet cycling on either API server; then the README's block
``scale x; stop x -y; start x; delete x -y`` runs back to back many times while a fleet cycles in a
thread, against moto's DynamoDB over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from gco_tasks.adapters.store import EndpointStore
from gco_tasks.cli import app, endpoints, support
from gco_tasks.core.records import DELETED, RUNNING
from gco_tasks.worker.fleet import Fleet
from tests.clusters import Cluster

from .harness import converge, run_cycle, wait_for

IMAGE = "nginx:1.27"


@pytest.fixture()
def cli(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("REGION_REDIS_URLS", raising=False)
    return CliRunner()


def run(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["endpoints", *args])
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return result.output


def desired(fleet: Fleet, name: str) -> str | None:
    item = fleet.store.get_item(name)
    return None if item is None else str(item["desired_state"])


def region_state(fleet: Fleet, name: str) -> str | None:
    item = fleet.store.get_item(name) or {}
    return (item.get("region_status", {}).get("us-east-1") or {}).get("state")


@pytest.fixture()
def between(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[[], None]], None]:
    """``between(method, action)``: the next call of the store's ``method`` (a conditional write) runs
    ``action`` first, once: a write that lands between the CLI's read and its write."""

    def arm(method: str, action: Callable[[], None]) -> None:
        original = getattr(EndpointStore, method)
        armed = [True]

        def wrapped(self: EndpointStore, *args: Any, **kwargs: Any) -> Any:
            if armed[0]:
                armed[0] = False
                action()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(EndpointStore, method, wrapped)

    return arm


def started(cli: CliRunner, fleet: Fleet, name: str) -> None:
    """``name`` deployed, running, stopped and started again: ``deploying``, pods coming back."""
    run(cli, "deploy", name, "-i", IMAGE, "-r", "us-east-1")
    converge(fleet, lambda: desired(fleet, name) == RUNNING)
    run(cli, "stop", name, "-y")
    converge(fleet, lambda: region_state(fleet, name) == "stopped")
    run(cli, "start", name)


# --------------------------------------------------------------------------------------------------
# The fleet's writes between the CLI's read and write
# --------------------------------------------------------------------------------------------------


def test_delete_after_start_survives_the_fleets_promotion(cli: CliRunner, fleet: Fleet, between: Any) -> None:
    """The issue's failure: `delete` read `deploying`, the fleet promoted to `running` before its write."""
    started(cli, fleet, "x")
    between("update_desired_state", lambda: converge(fleet, lambda: desired(fleet, "x") == RUNNING))
    assert "marked for deletion" in run(cli, "delete", "x", "-y")
    assert desired(fleet, "x") == DELETED


def test_scale_survives_the_fleets_promotion(cli: CliRunner, fleet: Fleet, between: Any) -> None:
    started(cli, fleet, "x")
    between("_write_if_unchanged", lambda: converge(fleet, lambda: desired(fleet, "x") == RUNNING))
    assert "scaled to 3 replicas" in run(cli, "scale", "x", "--replicas", "3")
    assert fleet.store.get("x").spec.replicas == 3


def test_another_users_state_change_fails_and_says_what_it_became(
    cli: CliRunner, fleet: Fleet, between: Any
) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")
    other = EndpointStore.from_settings(fleet.settings)
    between("update_desired_state", lambda: other.update_desired_state("x", DELETED))
    out = run(cli, "stop", "x", "-y", code=1)
    assert (
        "endpoint 'x' was changed by someone else while making it stopped: desired_state deploying -> deleted"
        in out
    )
    assert desired(fleet, "x") == DELETED, "the other user's delete stands"


def test_another_users_same_intent_is_not_an_error(cli: CliRunner, fleet: Fleet, between: Any) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")
    other = EndpointStore.from_settings(fleet.settings)
    between("update_desired_state", lambda: other.update_desired_state("x", DELETED))
    assert "marked for deletion" in run(cli, "delete", "x", "-y")


def test_another_users_change_of_the_same_field_fails_naming_it(
    cli: CliRunner, fleet: Fleet, between: Any
) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")
    other = EndpointStore.from_settings(fleet.settings)
    between("_write_if_unchanged", lambda: other.scale("x", 5))
    out = run(cli, "scale", "x", "--replicas", "2", code=1)
    assert "was changed by someone else meanwhile (spec.replicas: 1 -> 5); nothing written" in out
    assert fleet.store.get("x").spec.replicas == 5


def test_another_users_change_of_another_field_lands_with_ours(
    cli: CliRunner, fleet: Fleet, between: Any
) -> None:
    run(cli, "deploy", "x", "-i", IMAGE, "-r", "us-east-1")
    other = EndpointStore.from_settings(fleet.settings)
    between(
        "_write_if_unchanged", lambda: other.update_spec("x", lambda s: s.with_changes(image="nginx:1.28"))
    )
    run(cli, "scale", "x", "--replicas", "2")
    spec = fleet.store.get("x").spec
    assert (spec.replicas, spec.image) == (2, "nginx:1.28")


# --------------------------------------------------------------------------------------------------
# The README's block, back to back, against a cycling fleet
# --------------------------------------------------------------------------------------------------


#: The CLI's link to the table: an operator's laptop reaches DynamoDB in another region in ~100 ms.
LINK_SECONDS = 0.15


class FarStore(EndpointStore):
    """The CLI's store, its conditional writes sent over a slow link (the fleet's store is near): the
    window in which the fleet's writes land between the CLI's read and its write, as wide as in real use."""

    @classmethod
    def from_settings(cls, *args: Any, **kwargs: Any) -> EndpointStore:
        store = EndpointStore.from_settings(*args, **kwargs)
        store.client.meta.events.register("before-send.dynamodb.UpdateItem", _slow_link)
        return store


def _slow_link(**_: Any) -> None:
    threading.Event().wait(LINK_SECONDS)


@pytest.fixture()
def cycling(fleet: Fleet) -> Iterator[list[int]]:
    """A fleet running cycles back to back in a thread (fan-out and every reconcile, status reports and
    promotions); yields the count of cycles run."""
    stop, cycles, errors = threading.Event(), [0], []

    def loop() -> None:
        while not stop.is_set():
            try:
                run_cycle(fleet)
            except Exception as exc:
                errors.append(repr(exc))
            cycles[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield cycles
    stop.set()
    thread.join(timeout=60)
    assert errors == [], errors


def test_the_readmes_block_back_to_back_against_a_cycling_fleet(
    cli: CliRunner, fleet: Fleet, cluster: Cluster, cycling: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions: list[str | None] = []
    decide = endpoints.state_decision

    def counted(*args: Any) -> str | None:
        decisions.append(decide(*args))
        return decisions[-1]

    monkeypatch.setattr(endpoints, "state_decision", counted)
    monkeypatch.setattr(support, "EndpointStore", FarStore)
    rounds = 12 if cluster.kind == "real" else 25
    for i in range(rounds):
        name = f"x{i}"
        run(cli, "deploy", name, "-i", IMAGE, "-r", "us-east-1")
        # As the README (`status x --until running`): once the region reports running, the promotion
        # to `running` following in the fleet's next write, racing with the block.
        wait_for(lambda: region_state(fleet, name) == "running", f"{name} running", timeout=60)  # noqa: B023
        run(cli, "scale", name, "--replicas", "2")
        run(cli, "stop", name, "-y")
        run(cli, "start", name)
        if i % 2:  # delete once the pods are back: the promotion to `running` follows, racing with it
            wait_for(lambda: region_state(fleet, name) == "running", f"{name} back", timeout=60)  # noqa: B023
        run(cli, "delete", name, "-y")
        assert desired(fleet, name) in (DELETED, None)
    assert cycling[0] > rounds, "the fleet cycled meanwhile"
    assert None not in decisions, "no conflict was blamed on another user"
