"""``gcpause.paused``: no automatic collection inside, the collector's state given back after, nested and
from several threads at once."""

from __future__ import annotations

import gc
import threading

from gco_tasks.adapters import gcpause


def test_paused_inside_and_given_back_after() -> None:
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "the outer pause still holds"
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_from_threads_resume_only_after_the_last() -> None:
    entered, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with gcpause.paused():
            entered.wait(timeout=10)
            release.wait(timeout=10)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait(timeout=10)
    assert not gc.isenabled()
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert gc.isenabled()
