"""Healing: the supervisor restarts a bundled nats-server that died (crash, OOM kill, `kill -9`) with backoff.

Nothing acknowledged is lost meanwhile: every 202 was a JetStream ack, so the batch is in the store on disk;
the restarted server reads the same store on the same port, the roles' NATS clients reconnect on their own
(ingestion answers 503 + Retry-After until then), the broker re-ensures the streams, and the processor
re-binds its durable consumer and receives every unacked message again (its id check keeps rows stored once).

A server that keeps dying is not restarted forever: after `max_restarts` failed restarts in a row (a restart
counts as failed when the server does not listen within START_TIMEOUT, or dies again within `stable_after`)
the keeper gives up, and the supervisor shuts the stack down and exits with status 1 and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from ..broker.natsd import START_TIMEOUT, NatsServer
from ..config import check_at_least, check_positive

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_STABLE_AFTER",
    "NatsKeeper",
    "exit_reason",
]

log = logging.getLogger(__name__)

#: First wait before a restart (doubling per failed restart in a row, capped at DEFAULT_BACKOFF_MAX).
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_MAX = 10.0
#: Failed restarts in a row after which the supervisor gives up (about 40 s of trying with the defaults).
DEFAULT_MAX_RESTARTS = 6
#: A restarted server that stays up this long is healthy again: the failure count starts over.
DEFAULT_STABLE_AFTER = 30.0
_POLL = 0.1


def exit_reason(returncode: int) -> str:
    """`exit status N`, or `killed by SIGKILL` for a process a signal ended (Popen's negative returncode)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class NatsKeeper:
    """Watches `server` (already started) and restarts it when it exits while the stack runs.

    `on_restart(pid)` runs after each successful restart (the supervisor records the pid). Raises ValueError
    for nonsense settings."""

    def __init__(
        self,
        server: NatsServer,
        *,
        on_restart: Callable[[int], object] | None = None,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        stable_after: float = DEFAULT_STABLE_AFTER,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        check_positive(
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            stable_after=stable_after,
            start_timeout=start_timeout,
        )
        check_at_least(0, max_restarts=max_restarts)
        self.server = server
        self.on_restart = on_restart
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.max_restarts, self.stable_after = max_restarts, stable_after
        self.start_timeout = start_timeout
        self.restarts = 0
        #: Why the server is down, for the log and the reason given when the keeper gives up.
        self.last_error = ""

    async def watch(self, stop: asyncio.Event) -> str | None:
        """Run until `stop` is set (returns None) or restarting failed `max_restarts` times in a row (returns
        the reason, one line). Must run on the thread that started the server (see NatsServer.spawn)."""
        failures = 0
        up_since = time.monotonic()
        while not stop.is_set():
            if await self._wait(stop, _POLL):
                return None
            proc = self.server.process
            if proc is not None and proc.poll() is None:
                if failures and time.monotonic() - up_since >= self.stable_after:
                    failures = 0
                continue
            if proc is not None:
                self.last_error = exit_reason(proc.returncode)
            if failures >= self.max_restarts:
                return (
                    f"nats-server keeps exiting (last: {self.last_error}); gave up after "
                    f"{self.max_restarts} restarts in a row - see {self.server.store_dir / 'nats-server.log'}"
                )
            delay = min(self.backoff_max, self.backoff_base * 2**failures)
            log.error("nats-server is down (%s); restarting in %.1fs", self.last_error, delay)
            failures += 1
            if await self._wait(stop, delay):
                return None
            if await self._restart(stop):
                self.restarts += 1
                up_since = time.monotonic()
        return None

    async def _restart(self, stop: asyncio.Event) -> bool:
        try:
            self.server.spawn()
            deadline = time.monotonic() + self.start_timeout
            while not self.server.listening():
                if time.monotonic() > deadline or await self._wait(stop, 0.05):
                    raise RuntimeError(f"did not listen on {self.server.url} within {self.start_timeout}s")
        except (OSError, RuntimeError) as exc:
            # The server's own complaint (its log's last error line) says more than the exit status.
            lines = str(exc).splitlines()
            errors = [line for line in lines if "[FTL]" in line or "[ERR]" in line]
            self.last_error = (errors[-1] if errors else lines[0] if lines else repr(exc))[:300]
            log.error("nats-server restart failed: %s", self.last_error)
            self.server.stop()
            return False
        assert self.server.process is not None
        log.warning("nats-server restarted (pid %d) on %s", self.server.process.pid, self.server.url)
        if self.on_restart is not None:
            self.on_restart(self.server.process.pid)
        return True

    @staticmethod
    async def _wait(stop: asyncio.Event, seconds: float) -> bool:
        """Wait up to `seconds`; True when `stop` was set meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return stop.is_set()
