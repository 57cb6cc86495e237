"""The SDK's own diagnostics: short lines on stderr, rate-limited per topic, never through `logging`.

Going around `logging` is deliberate: the worker must never need the logging module's locks, and a diagnostic
must never become a record that this SDK would then try to ship.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["DIAG_INTERVAL", "report", "write"]

#: At most one line per topic per this many seconds; suppressed repeats are counted in the next line.
DIAG_INTERVAL = 30.0

_lock = threading.Lock()
_last: dict[str, float] = {}
_suppressed: dict[str, int] = {}


def report(topic: str, message: str) -> bool:
    """Write `oglogstream: message` to stderr unless `topic` was reported within DIAG_INTERVAL; returns
    whether it was written (a line that follows up on this one, like a recovery, is printed only then)."""
    now = time.monotonic()
    with _lock:
        last = _last.get(topic)
        if last is not None and now - last < DIAG_INTERVAL:
            _suppressed[topic] = _suppressed.get(topic, 0) + 1
            return False
        _last[topic] = now
        skipped = _suppressed.pop(topic, 0)
    suffix = f" ({skipped} similar messages suppressed)" if skipped else ""
    write(f"{message}{suffix}")
    return True


def write(message: str) -> None:
    """Write `oglogstream: message` to stderr now (callers rate-limit); never raises."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(f"oglogstream: {message}\n")
            stream.flush()
    except Exception:  # a closed or broken stderr must not break the worker
        pass


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)
