"""The deadline on every stop of `oglog serve` / `oglog stack up` / `oglog demo`: past it, kill and exit.

Each step of a stop has its own bound (aiohttp's in-flight requests, the processor's last batch, the ingest
workers' drains, closing NATS), but a stop is only as bounded as its least bounded wait, and some are not
ours: asyncio.run cancels the tasks left over and waits for them, and for the threads of its executor, with no
deadline. A service that ignores SIGTERM gets SIGKILLed by systemd or Kubernetes anyway, without a word; this
says why and kills the children first. Armed by the first SIGINT/SIGTERM (or any other start of a stop); a
daemon thread, so it neither needs the event loop (which may be what hangs) nor keeps the process alive.

Killing is safe for the data: nothing is acked to JetStream before it is stored, so JetStream redelivers every
batch the processor held on the next start, and a client whose request was cut off retries it (the SDK does,
with the same batch id) - the same as the second Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

__all__ = ["EXIT_STOP_DEADLINE", "STOP_MARGIN", "StopDeadline", "stop_deadline"]

#: Seconds a stop may take beyond SHUTDOWN_TIMEOUT (`--shutdown-timeout`, the drain of in-flight requests,
#: ingest workers and the processor's last batch): closing storage and NATS (at most 5 s each) and stopping
#: nats-server. A stop that ran normally but late is cut off here, so it is not tight.
STOP_MARGIN = 15.0
#: Exit status of a process whose stop passed its deadline (as for a stack that could not run).
EXIT_STOP_DEADLINE = 1


def stop_deadline(shutdown_timeout: float) -> float:
    """Seconds from the start of a stop to the exit of the process, at most: `shutdown_timeout` +
    STOP_MARGIN (45 s with the default 30 s)."""
    return shutdown_timeout + STOP_MARGIN


class StopDeadline:
    """Once `arm()`ed, exits the process `stop_deadline(shutdown_timeout)` seconds later unless it exited by
    itself: one line on `err` naming the deadline, SIGKILL to each pid `children()` returns (ingest workers,
    nats-server), exit status EXIT_STOP_DEADLINE. `arm()` twice keeps the first deadline."""

    def __init__(
        self,
        shutdown_timeout: float,
        children: Callable[[], list[int]] = list,
        *,
        err: TextIO | None = None,
    ) -> None:
        self.seconds = stop_deadline(shutdown_timeout)
        self.shutdown_timeout = shutdown_timeout
        self._children = children
        self._err = err
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self.seconds, self._expire)
                self._timer.name = "oglog-stop-deadline"
                self._timer.daemon = True
                self._timer.start()

    def kill_children(self) -> list[int]:
        """SIGKILL each process `children()` names now (ingest workers, nats-server: a SIGSTOPped one ignores
        the parent-death SIGTERM it would get when this process exits); returns their pids. Never blocks or
        raises: the deadline's thread and a second Ctrl-C call it."""
        try:
            pids = list(self._children())
        except Exception:  # a pool in the middle of a restart: kill what can be known
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def _expire(self) -> None:
        # Nothing here may block: no logging (its handlers take locks a hung thread may hold), no event loop.
        pids = self.kill_children()
        said = f"; killing children (pids {pids})" if pids else ""
        err = self._err or sys.stderr
        with contextlib.suppress(Exception):
            err.write(
                f"oglog: error: shutdown did not finish within {self.seconds:g}s (shutdown timeout "
                f"{self.shutdown_timeout:g}s + {STOP_MARGIN:g}s){said}; exiting now (unacked batches are "
                "redelivered on the next start)\n"
            )
            err.flush()
        os._exit(EXIT_STOP_DEADLINE)
