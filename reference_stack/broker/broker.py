"""NATS + JetStream for every role: `Broker`, durable publishes on a connection that keeps reconnecting
(`connection.Connection`: connecting, the streams, following live-tail interest), and the live tail's traffic.

`publish` returns once JetStream acknowledged the message (one whose ack may have been lost is re-sent once
under its Nats-Msg-Id), else raises BrokerUnavailable, which callers answer 503 + Retry-After.

Live-tail interest (#14): a live-tail hub with clients announces them on LIVE_INTEREST_SUBJECT
(`announce_live_interest`, at once for its first client, then every LIVE_INTEREST_INTERVAL); every Broker
follows these announcements and `publish_live` publishes only until LIVE_INTEREST_TIMEOUT after the last one
it heard, so with nobody watching the live copies cost neither ingestion, nor nats-server, nor the query role.
A connection that is new or re-established assumes interest for LIVE_INTEREST_TIMEOUT, so a process that
started or reconnected while clients watch publishes before it hears its first announcement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import nats.errors
from nats.js import api

from ..config import LIVE_INTEREST_SUBJECT, LIVE_SUBJECT
from .connection import LIVE_INTEREST_INTERVAL, LIVE_INTEREST_TIMEOUT, Connection
from .live_connection import LiveSubscription, open_live_subscription
from .messages import MSG_ID
from .streams import DEFAULT_DUPLICATE_WINDOW, dead_stream_config, stream_config

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "LIVE_INTEREST_INTERVAL",
    "LIVE_INTEREST_TIMEOUT",
    "Broker",
    "BrokerUnavailable",
    "dead_stream_config",
    "stream_config",
]

log = logging.getLogger(__name__)

#: /health reports JetStream publishes as failing while the last one failed and none succeeded since, for this
#: long (seconds) after that failure: a connected server whose store is full or whose stream is unavailable
#: answers every POST 503, and a load balancer should see that too (without traffic nothing newer is known).
PUBLISH_FAILURE_HEALTH_WINDOW = 30.0
#: Errors after which a JetStream publish MAY have been stored: its ack was lost (no answer in time, the
#: connection closed or cut by the server as a slow consumer). Refusals (stream full, no stream) are not here.
_OUTCOME_UNKNOWN = (
    asyncio.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.UnexpectedEOF,
    OSError,
)


class BrokerUnavailable(Exception):
    """The broker could not durably take a message right now; the caller should answer 503 + Retry-After.

    `maybe_stored`: the message was sent but no ack came back (timeout, connection lost) even after the
    re-send: JetStream may have stored it, and a resend without the same Nats-Msg-Id may store it twice."""

    def __init__(self, reason: str, *, maybe_stored: bool = False) -> None:
        super().__init__(reason)
        self.maybe_stored = maybe_stored


class Broker(Connection):
    """Durable publishes and the live tail's traffic on the connection (settings: `Connection`)."""

    # Defaults of the publish state on the class: the constructor is the connection's (its settings).
    #: Publishes re-sent because their ack may have been lost (see `publish`).
    resends = 0
    _publish_failure: tuple[float, str] | None = None  # (monotonic time, reason) of the last failure

    # -- publishing --------------------------------------------------------------------------------------
    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str]) -> api.PubAck:
        """Publish to JetStream and wait for the broker's ack (the message is then on disk).

        When the ack may have been lost (no ack within publish_timeout, the connection lost meanwhile) and
        `headers` carry a Nats-Msg-Id, the same message is re-sent once, as soon as the connection is ready
        again, within another publish_timeout: the stream's duplicate window stores it once either way (the
        ack then says duplicate), so a body stored before the connection was cut is not answered 503 (#14).
        Raises BrokerUnavailable when NATS is not ready or the message is not acknowledged in time."""
        if not self.is_connected:
            raise BrokerUnavailable(f"NATS is {self.status.lower()}")
        try:
            ack = await self._publish_or_resend(subject, payload, headers)
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            reason = f"JetStream publish failed: {type(exc).__name__}: {exc}"
            self._publish_failure = (time.monotonic(), reason)
            raise BrokerUnavailable(reason, maybe_stored=isinstance(exc, _OUTCOME_UNKNOWN)) from exc
        self._publish_failure = None
        return ack

    async def _publish_or_resend(
        self, subject: str, payload: bytes, headers: Mapping[str, str]
    ) -> api.PubAck:
        try:
            return await self.js.publish(
                subject, payload, timeout=self.publish_timeout, headers=dict(headers)
            )
        except _OUTCOME_UNKNOWN:
            if MSG_ID not in headers:  # without an id a second copy would be stored: the caller decides
                raise
        deadline = time.monotonic() + self.publish_timeout
        self.resends += 1
        if not await self.wait_ready(self.publish_timeout):
            raise asyncio.TimeoutError(f"NATS not ready again within {self.publish_timeout:g}s")
        left = max(deadline - time.monotonic(), 0.001)
        ack = await self.js.publish(subject, payload, timeout=left, headers=dict(headers))
        log.warning(
            "nats: a publish's ack was lost; re-sent %s %s (%s)",
            MSG_ID,
            headers[MSG_ID],
            "it had been stored: kept once" if ack.duplicate else "stored now",
        )
        return ack

    @property
    def publish_failure(self) -> str | None:
        """Why the last JetStream publish failed, if no publish succeeded since and it failed within the last
        PUBLISH_FAILURE_HEALTH_WINDOW seconds; else None (what /health reports)."""
        failure = self._publish_failure
        if failure is None or time.monotonic() - failure[0] > PUBLISH_FAILURE_HEALTH_WINDOW:
            return None
        return failure[1]

    # -- live tail ---------------------------------------------------------------------------------------
    async def announce_live_interest(self, *, timeout: float | None = None) -> None:
        """Tell every process publishing live copies (this one included, at once) that a live-tail client is
        connected. With `timeout` (seconds), also wait until the server has the announcement (a PING round
        trip, which covers this connection's earlier commands such as a SUB): from then on, an entry
        whose JetStream publish is acknowledged is published live by any process on that server. Raises
        BrokerUnavailable when NATS is not connected or the round trip fails or times out."""
        if not self.nc.is_connected:
            raise BrokerUnavailable(f"NATS is {self.status.lower()}")
        self._assume_live_interest()
        try:
            await self.nc.publish(LIVE_INTEREST_SUBJECT, b"")
            if timeout is not None:
                await self.nc.flush(timeout)  # type: ignore[arg-type]  # int-typed, takes floats
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"live-tail announcement failed: {type(exc).__name__}: {exc}") from exc

    async def publish_live(self, payload: bytes) -> bool:
        """Best effort, no persistence: fan accepted entries out to live-tail subscribers, only while
        `live_interest` (else nothing is sent). `payload`: a row payload (JSON array of rows, as in
        JetStream) or NDJSON of public entries (an older ingestion). Returns whether it was published."""
        if not (self.nc.is_connected and self.live_interest):
            return False
        await self.nc.publish(LIVE_SUBJECT, payload)
        return True

    async def subscribe_live(
        self,
        cb: Callable[[bytes], Awaitable[None]],
        *,
        on_gap: Callable[[str, str], None],
        timeout: float,
    ) -> LiveSubscription:
        """Core NATS subscription on LIVE_SUBJECT over a connection of its own (`live_connection`: a live-tail
        backlog must not get this one cut as a slow consumer); `cb` gets each message's raw payload (see
        publish_live), `on_gap(reason, detail)` is called when entries may have been missed. Ready (the server
        has it) on return, within `timeout` seconds, else BrokerUnavailable."""
        try:
            return await open_live_subscription(
                self.servers,
                name=f"{self.name}-live",
                connect_timeout=self.connect_timeout,
                reconnect_wait=self.reconnect_wait,
                timeout=timeout,
                cb=cb,
                on_gap=on_gap,
            )
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"live-tail subscription failed: {type(exc).__name__}: {exc}") from exc
