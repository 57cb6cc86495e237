"""The live-tail subscription on a NATS connection of its own (`Broker.subscribe_live`).

Why its own connection: nats-server cuts a connection whose unread bytes pass its `max_pending` (64 MiB) or
whose writes stall past its write deadline - a slow consumer (#14). The live subject carries a copy of every
accepted entry while someone watches; on the broker's connection a backlog of it would count against the
same connection the processor pulls and acknowledges on and ingestion publishes on, and cutting it costs
redeliveries and failed publishes. On its own connection a backlog can only cut itself, and the hub closes
its clients with "entries may be missing" (`on_gap`) so nothing is lost silently. nats-py also bounds what it
holds for the subscription (LIVE_PENDING_BYTES) and reports each message it drops: also a gap.

Order: one subscription on one connection delivers messages in the order the server sent them, so each
ingestion connection's entries arrive in publish order, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from ..config import LIVE_SUBJECT
from .stopping import ClosingGuard, cancel_and_wait

__all__ = ["LIVE_PENDING_BYTES", "LiveSubscription", "open_live_subscription"]

log = logging.getLogger(__name__)

#: Bytes of live-subject messages nats-py holds for the hub's callback before it drops (and reports) the
#: next ones. The hub turns payloads into queued entries as fast as they come unless its event loop is
#: stalled; this bounds what a stall keeps in memory.
LIVE_PENDING_BYTES = 64 * 1024 * 1024
#: Bound (seconds) on closing the connection.
CLOSE_TIMEOUT = 2.0


class LiveSubscription:
    """The subscription and its connection; `unsubscribe()` closes both (safe twice)."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        # `closing`, set by unsubscribe: its disconnect is no gap, and no more connect attempts.
        self.guard = ClosingGuard()

    @property
    def closing(self) -> bool:
        return self.guard.closing

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def ready(self, timeout: float) -> None:
        """Return once the server has this connection's subscription (a PING round trip); ConnectionError
        when the connection is down or gave no answer within `timeout` seconds."""
        if not self.nc.is_connected:
            raise ConnectionError("the live-tail NATS connection is down (reconnecting)")
        try:
            await self.nc.flush(timeout)  # type: ignore[arg-type]  # int-typed, takes floats
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"the live-tail NATS connection: {type(exc).__name__}: {exc}") from exc

    async def unsubscribe(self) -> None:
        self.guard.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), CLOSE_TIMEOUT)


async def open_live_subscription(
    servers: list[str],
    *,
    name: str,
    connect_timeout: float,
    reconnect_wait: float,
    timeout: float,
    cb: Callable[[bytes], Awaitable[None]],
    on_gap: Callable[[str, str], None],
) -> LiveSubscription:
    """Connect to `servers`, subscribe to LIVE_SUBJECT with `cb` (each message's payload) and wait until the
    server has the subscription, all within `timeout` seconds (asyncio.TimeoutError or nats.errors.Error,
    the connection closed). Afterwards `on_gap(reason, detail)` is called, synchronously, whenever entries may
    have been missed: the connection was lost ("nats_disconnect") or re-established ("nats_reconnect"), or
    nats-py dropped messages for want of room ("slow_consumer"). Reconnects by itself until unsubscribed."""
    nc = NatsClient()
    subscription = LiveSubscription(nc)

    async def error_cb(exc: Exception) -> None:
        # Past unsubscribe, a connect loop that survived its cancellation ends here (stopping.py).
        subscription.guard.check(starting, getattr(nc, "_reconnection_task", None))
        if isinstance(exc, nats.errors.SlowConsumerError):
            on_gap("slow_consumer", "live-tail messages dropped by the NATS client (its queue was full)")
        else:
            log.debug("nats (live tail): %s", exc)

    async def disconnected_cb() -> None:
        if not subscription.closing:
            on_gap("nats_disconnect", "the live-tail NATS connection was lost")

    async def reconnected_cb() -> None:
        on_gap("nats_reconnect", "the live-tail NATS connection reconnected")

    async def handler(msg: Msg) -> None:
        await cb(msg.data)

    async def start() -> None:
        await nc.connect(
            servers=servers,
            name=name,
            connect_timeout=connect_timeout,  # type: ignore[arg-type]  # int-typed, takes floats
            reconnect_time_wait=reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            ping_interval=5,
            max_outstanding_pings=2,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
        )
        await nc.subscribe(LIVE_SUBJECT, cb=handler, pending_bytes_limit=LIVE_PENDING_BYTES)
        await nc.flush()

    # Not asyncio.wait_for(start(), timeout): on a timeout it awaits the cancelled start() without a deadline,
    # and nats-py's connect loop can swallow that cancellation and retry forever (stopping.py).
    starting: asyncio.Task[None] = asyncio.create_task(start(), name="oglog-live-connect")
    try:
        done, _ = await asyncio.wait({starting}, timeout=timeout)
        if not done:
            raise asyncio.TimeoutError(f"no live-tail NATS subscription within {timeout:g}s")
        starting.result()
    except BaseException:
        subscription.guard.closing = True
        await cancel_and_wait(starting, CLOSE_TIMEOUT, what="the live-tail NATS connect")
        await subscription.unsubscribe()
        raise
    return subscription
