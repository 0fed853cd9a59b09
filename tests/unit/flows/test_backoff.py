"""The fan-out's side of a rollout backoff (``fanout.held_by_backoff``): a rollout is not sent again
before its backoff says it is due; anything else the fan-out finds is sent at once. Fails on the old
behaviour, where every fan-out sent each endpoint still rolling out (695 messages for 100 endpoints in a
cold start on the real control plane)."""

from __future__ import annotations

from gco_tasks.flows.fanout import held_by_backoff


def test_a_rollout_waits_for_its_backoff() -> None:
    assert held_by_backoff("rollout", (110.0, 0.0), now=100.0)
    assert not held_by_backoff("rollout", (110.0, 0.0), now=110.0)
    assert not held_by_backoff("rollout", None, now=100.0)  # no backoff: sent, as before


def test_news_is_never_held() -> None:
    for reason in ("status", "change", "drift", "delete", "resync", "heartbeat", "watchdog-release"):
        assert not held_by_backoff(reason, (110.0, 105.0), now=100.0), reason
