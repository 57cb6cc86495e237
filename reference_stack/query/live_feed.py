"""The live tail's NATS side (`LiveFeed`): the app's one subscription on LIVE_SUBJECT and its interest
announcements, held only while the hub (live.py) has clients (#14).

Separate from the hub, which holds the clients and the route, because this part follows NATS rather than
sockets: it is made by the first client's `watch()` and ended by `unwatch()` after the last one left, and it
decides when the clients may have missed entries. `watch()` returns once the subscription is made (on a
NATS connection of its own, `Broker.subscribe_live`) and the interest announcement
(`Broker.announce_live_interest`, repeated every LIVE_INTEREST_INTERVAL while clients remain) has reached the
NATS server, within READY_TIMEOUT.
It calls the hub's `interrupt(reason, detail)` when its live connection is lost, re-established or drops
messages (`on_gap`), when the broker's connection reconnects (ingestion may have reconnected first and
published while the hub could not receive: the live tail is not replayed), and when its last successful
announcement is older than the broker's live_interest_timeout less LAPSE_MARGIN (its event loop stalled, or
announcing kept failing), since ingestion may then have stopped publishing live copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sized
from typing import Any

from aiohttp import web

from ..broker.broker import LIVE_INTEREST_INTERVAL, BrokerUnavailable
from ..http.resources import BROKER

__all__ = ["LAPSE_MARGIN", "READY_TIMEOUT", "LiveFeed"]

log = logging.getLogger(__name__)

#: Bound on a new client's wait, before its upgrade, for NATS, the subscription and the interest announcement;
#: past it the client gets 503 + Retry-After (an open socket that would miss entries is worse).
READY_TIMEOUT = 5.0
#: Seconds of an announcement's travel to every ingestion process, deducted from the broker's
#: live_interest_timeout: announcements further apart than the difference may have let ingestion stop.
LAPSE_MARGIN = 1.0


class LiveFeed:
    """The subscription and the announcer of one app's hub.

    `clients`: the hub's client set (only its size is read: the last departure ends the subscription);
    `on_payload(payload)`: each live message's row payload; `interrupt(reason, detail)`: close the promised
    clients, entries may be missing (synchronous, must not raise)."""

    def __init__(
        self,
        app: web.Application,
        clients: Sized,
        on_payload: Callable[[bytes], Awaitable[None]],
        interrupt: Callable[[str, str], None],
    ) -> None:
        self.app = app
        self._clients = clients
        self._on_payload = on_payload
        self._interrupt = interrupt
        self.subscription: Any = None  # held while the hub has clients
        self.announcer: asyncio.Task[None] | None = None  # likewise
        self._gate = asyncio.Lock()  # one subscribe/unsubscribe at a time (first arrival vs last departure)
        self._announce_now = asyncio.Event()  # set after a NATS reconnect: announce without waiting
        self._announced_at: float | None = None  # loop time of the last successful announcement
        self._unlisten: Callable[[], None] | None = None

    def start(self) -> None:
        """Follow the broker's reconnects (from the app's startup, whether or not anyone watches)."""
        self._unlisten = self.app[BROKER].on_reconnected(self.on_reconnected)

    def on_reconnected(self) -> None:
        """What the broker calls after a NATS reconnect."""
        self._announce_now.set()
        # Entries published while this connection was down were not received, and are not replayed.
        self._interrupt("nats_reconnect", "NATS reconnected")

    def _check_lapse(self) -> None:
        """If the last successful announcement is older than the broker's live_interest_timeout less
        LAPSE_MARGIN, ingestion may have stopped publishing live copies since: interrupt the clients."""
        if self._announced_at is None:
            return
        silence = asyncio.get_running_loop().time() - self._announced_at
        lapse = self.app[BROKER].live_interest_timeout - LAPSE_MARGIN
        if silence > lapse:
            self._interrupt("announcement_lapse", f"interest announced {silence:.1f}s ago (> {lapse:g}s)")

    def _announced(self) -> None:
        """After a successful announcement (the check first: the gap before it may have lost entries)."""
        self._check_lapse()
        self._announced_at = asyncio.get_running_loop().time()

    async def watch(self) -> None:
        """For a client already in the hub's clients: return once the subscription exists and interest was
        announced to the NATS server (within READY_TIMEOUT). Raises BrokerUnavailable, TimeoutError or
        ConnectionError (the live connection is down)."""
        broker = self.app[BROKER]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        if not await broker.wait_ready(READY_TIMEOUT):
            raise BrokerUnavailable(f"NATS is {broker.status.lower()}")
        # Holders of the gate only run bounded steps (nats-py queues a SUB locally; the flush has a timeout).
        await asyncio.wait_for(self._gate.acquire(), max(deadline - loop.time(), 0.001))
        try:
            remaining = max(deadline - loop.time(), 0.001)
            if self.subscription is None:
                # Its own NATS connection, ready on return; nats-py re-subscribes by itself after a reconnect
                # (and on_gap closes the clients then), so one call holds it until unwatch.
                self.subscription = await broker.subscribe_live(
                    self._on_payload, on_gap=self._interrupt, timeout=remaining
                )
            else:  # down since (a gap closed the clients before): this client must not be promised yet
                await self.subscription.ready(remaining)
            stale = self._announced_at is None or (
                loop.time() - self._announced_at > broker.live_interest_timeout - LAPSE_MARGIN
            )
            if self.announcer is None or stale:
                # The server has the SUB already (subscribe_live/ready waited for it). Stale: the announcer
                # has not run for long (a stalled loop), so interest may have lapsed meanwhile.
                await broker.announce_live_interest(timeout=max(deadline - loop.time(), 0.001))
                self._announced()
            if self.announcer is None:
                self._announce_now.clear()  # a reconnect while nobody watched: just announced anyway
                self.announcer = asyncio.create_task(self._announce_forever(), name="oglog-live-interest")
        finally:
            self._gate.release()

    async def unwatch(self) -> None:
        """After a client left the hub's clients: if it was the last, end the announcements and the
        subscription."""
        async with self._gate:
            if len(self._clients) or self.subscription is None:
                return
            await self._end_subscription()

    async def stop(self) -> None:
        """At the app's cleanup: stop following reconnects, end the announcements and the subscription."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        async with self._gate:
            await self._end_subscription()

    async def _end_subscription(self) -> None:
        announcer, self.announcer = self.announcer, None
        self._announced_at = None  # the next first client starts afresh: nobody was promised meanwhile
        if announcer is not None:
            announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcer
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # NATS closed: nothing left to unsubscribe from
                await subscription.unsubscribe()

    async def _announce_forever(self) -> None:
        broker = self.app[BROKER]
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._announce_now.wait(), LIVE_INTEREST_INTERVAL)
            self._announce_now.clear()
            try:
                await broker.announce_live_interest()
            except BrokerUnavailable as exc:  # disconnected: announced again right after the reconnect
                log.debug("live tail: interest announcement skipped: %s", exc)
                self._check_lapse()  # failing for long: tell the clients now, not once it works again
            else:
                self._announced()
