"""Python's cyclic garbage collector paused while a large response is decoded.

Where it stands in the flow: under the adapters' reads that build many objects at once (the cluster
gateway's LIST pages, the store's Scan pages). More in docs/architecture.md.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside the block (explicit ``gc.collect()`` still works)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
