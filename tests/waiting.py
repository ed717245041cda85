"""Waiting for state, not for time: the tests' one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(predicate: Callable[[], object], what: str, timeout: float = 180, every: float = 0.2) -> None:
    """Return as soon as ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
