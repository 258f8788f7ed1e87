"""Waiting in tests for something real processes do."""

from __future__ import annotations

import time


def until(predicate, timeout: float, what: str, every: float = 0.2):
    """``predicate()``'s first truthy value, polled every ``every`` s; AssertionError naming ``what`` after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
