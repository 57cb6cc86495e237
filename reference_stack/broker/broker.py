"""NATS + JetStream for every role: a connection that keeps reconnecting, the stream, durable publishes.

Starting while NATS is down must not crash a role: `Broker.start()` returns at once and connects in the
background (forever, `reconnect_wait` apart); until then `is_connected` is False and ingestion answers 503.

Live-tail interest (#14): a live-tail hub with clients announces them on LIVE_INTEREST_SUBJECT
(`announce_live_interest`, at once for its first client, then every LIVE_INTEREST_INTERVAL); every Broker
follows these announcements and `publish_live` publishes only until LIVE_INTEREST_TIMEOUT after the last one
it heard, so with nobody watching the live copies cost neither ingestion, nor nats-server, nor the query role.
A connection that is new or re-established assumes interest for LIVE_INTEREST_TIMEOUT, so a process that
started or reconnected while clients watch publishes before it hears its first announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from ..auth.redact import redact
from ..config import LIVE_INTEREST_SUBJECT, LIVE_SUBJECT, STREAM_NAME, check_at_least, check_positive
from .live_connection import LiveSubscription, open_live_subscription
from .messages import MSG_ID
from .streams import DEFAULT_DUPLICATE_WINDOW, dead_stream_config, ensure_streams, stream_config

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

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RECONNECT_WAIT = 0.5
DEFAULT_PUBLISH_TIMEOUT = 5.0
DEFAULT_DRAIN_TIMEOUT = 5.0
#: At most one "slow consumer" line per this many seconds (the next one counts the drops in between).
_SLOW_CONSUMER_LOG_INTERVAL = 10.0
#: /health reports JetStream publishes as failing while the last one failed and none succeeded since, for this
#: long (seconds) after that failure: a connected server whose store is full or whose stream is unavailable
#: answers every POST 503, and a load balancer should see that too (without traffic nothing newer is known).
PUBLISH_FAILURE_HEALTH_WINDOW = 30.0
#: A live-tail hub with clients announces them this often (seconds). One small message per hub per interval
#: while someone watches; shorter only makes ingestion stop sooner after the last client leaves.
LIVE_INTEREST_INTERVAL = 2.0
#: Ingestion publishes live copies until this long after the last announcement it heard (seconds). Fifteen
#: intervals: a hub whose event loop stalls for several seconds (GC, swap, a paused container: 4-9 s were
#: seen to cut clients off at 6 s) keeps its clients' entries coming. The only cost of a long timeout is that
#: ingestion keeps publishing live copies this long after the last client left. A hub whose announcements
#: lapse beyond it anyway closes its clients (query/live.py), so a gap is never silent.
LIVE_INTEREST_TIMEOUT = 15 * LIVE_INTEREST_INTERVAL


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


class Broker:
    """Owns the nats-py connection (`nc`) and its JetStream context (`js`)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        reconnect_wait: float = DEFAULT_RECONNECT_WAIT,
        publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
        duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
        stream_replicas: int = 1,
        name: str = "oglog",
        live_interest_timeout: float = LIVE_INTEREST_TIMEOUT,
    ) -> None:
        check_positive(
            connect_timeout=connect_timeout,
            reconnect_wait=reconnect_wait,
            publish_timeout=publish_timeout,
            duplicate_window=duplicate_window,
            live_interest_timeout=live_interest_timeout,
        )
        check_at_least(1, stream_replicas=stream_replicas)
        self.url = url
        self.name = name
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.publish_timeout = publish_timeout
        self.duplicate_window = duplicate_window
        self.stream_replicas = stream_replicas
        #: Seconds publish_live keeps publishing after the last announcement heard; a hub on this broker
        #: treats a longer silence of its own announcements as a gap in its clients' entries.
        self.live_interest_timeout = live_interest_timeout
        self.nc: NatsClient = NatsClient()
        self.js: JetStreamContext = self.nc.jetstream(timeout=publish_timeout)
        self._stream_ready = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._ensure_task: asyncio.Task[None] | None = None
        self._closing = False
        self._unreachable_said = False  # the "cannot reach NATS" line was printed for this outage
        self._publish_failure: tuple[float, str] | None = None  # (monotonic time, reason) of the last failure
        self._live_until = 0.0  # monotonic time until which publish_live publishes (see the module docstring)
        self._reconnect_listeners: list[Callable[[], None]] = []
        self._slow_said = -_SLOW_CONSUMER_LOG_INTERVAL  # monotonic time of the last slow-consumer line
        self._slow_dropped = 0  # messages dropped since that line
        #: Publishes re-sent because their ack may have been lost (see `publish`).
        self.resends = 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self, *, wait: float = 0.0) -> None:
        """Begin connecting in the background; wait up to `wait` seconds for the stream to be ready."""
        self._connect_task = asyncio.create_task(self._connect(), name="oglog-nats-connect")
        if wait > 0:
            await self.wait_ready(wait)

    async def wait_ready(self, timeout: float) -> bool:
        """True once connected with the stream in place, False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._stream_ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _connect(self) -> None:
        # nats-py retries the first connect forever when max_reconnect_attempts < 0. Its timeouts are typed
        # int but only reach asyncio.wait_for/sleep, which take the sub-second floats we use.
        await self.nc.connect(
            servers=[url.strip() for url in self.url.split(",") if url.strip()],  # a cluster: a,b,c
            name=self.name,
            connect_timeout=self.connect_timeout,  # type: ignore[arg-type]
            reconnect_time_wait=self.reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            ping_interval=5,
            max_outstanding_pings=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._unreachable_said = False
        self._assume_live_interest()
        try:
            # nats-py re-subscribes after every reconnect: one subscription for the connection's whole life.
            await self.nc.subscribe(LIVE_INTEREST_SUBJECT, cb=self._on_live_interest)
        except nats.errors.Error as exc:  # deaf to announcements: publish live copies always, never lose them
            self._live_until = float("inf")
            log.error("nats: cannot follow live-tail interest (%s); publishing every live copy", exc)
        await self._ensure_stream_until_ready()

    async def _ensure_stream_until_ready(self) -> None:
        said = ""  # the same refusal every reconnect_wait is said once, not twice a second
        while self.nc.is_connected:
            try:
                await self.ensure_stream()
                return
            except (nats.errors.Error, asyncio.TimeoutError) as exc:
                hint = ""
                if self.stream_replicas > 1:
                    hint = (
                        f" (NATS_STREAM_REPLICAS={self.stream_replicas}: JetStream needs at least that many "
                        "servers in the cluster; 1 on a single server)"
                    )
                line = f"JetStream stream {STREAM_NAME} not ready yet: {exc}{hint}; retrying"
                log.log(logging.DEBUG if line == said else logging.WARNING, "%s", line)
                said = line
                await asyncio.sleep(self.reconnect_wait)

    async def ensure_stream(self) -> None:
        """Create or update the streams (streams.ensure_streams); publishes are accepted from then on."""
        await ensure_streams(self.js, duplicate_window=self.duplicate_window, replicas=self.stream_replicas)
        self._stream_ready.set()

    async def _on_error(self, exc: Exception) -> None:
        # While not connected, each failed attempt lands here: say it once per outage, at ERROR, so a role
        # started against a wrong or down NATS_URL does not look healthy in its own log.
        if not self.nc.is_connected and not self._closing and not self._unreachable_said:
            self._unreachable_said = True
            log.error(
                "cannot reach NATS at %s: %s; retrying every %gs (ingestion answers 503 until then)",
                redact(self.url),
                redact(str(exc) or type(exc).__name__),
                self.reconnect_wait,
            )
        elif isinstance(exc, nats.errors.SlowConsumerError):
            # The client dropped a message it could not queue: a JetStream one comes back only after ack_wait.
            # Once per _SLOW_CONSUMER_LOG_INTERVAL (one line per dropped message would flood stderr).
            now = time.monotonic()
            self._slow_dropped += 1
            if now - self._slow_said >= _SLOW_CONSUMER_LOG_INTERVAL:
                self._slow_said = now
                log.error(
                    "nats: %d message(s) on %s dropped by this client (slow consumer: its queue is full); "
                    "JetStream redelivers them after ack_wait",
                    self._slow_dropped,
                    exc.subject,
                )
                self._slow_dropped = 0
        else:
            log.debug("nats: %s", exc)

    async def _on_disconnected(self) -> None:
        self._stream_ready.clear()
        if not self._closing:
            log.warning("nats: disconnected from %s", self.url)

    async def _on_reconnected(self) -> None:
        # Before the stream is ready again (no JetStream publish is acknowledged before): announcements sent
        # while this connection was down are lost, and a hub's clients must not miss entries because of it.
        self._assume_live_interest()
        for listener in list(self._reconnect_listeners):
            listener()
        self._unreachable_said = False
        log.info("nats: reconnected to %s", self.url)
        # The server may have come back with an empty store: re-create the stream before taking writes again.
        if self._ensure_task is None or self._ensure_task.done():
            self._ensure_task = asyncio.create_task(
                self._ensure_stream_until_ready(), name="oglog-nats-stream"
            )

    async def close(self, *, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT) -> None:
        """Flush and close; bounded by `drain_timeout`. Safe to call twice."""
        self._closing = True
        for task in (self._connect_task, self._ensure_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.flush(), drain_timeout)
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), drain_timeout)
        self._stream_ready.clear()

    # -- state -------------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """CONNECTED, CONNECTING, RECONNECTING, DRAINING, CLOSED or DISCONNECTED (as the seed reports)."""
        nc = self.nc
        if nc.is_connected:
            return "CONNECTED"
        if nc.is_reconnecting:
            return "RECONNECTING"
        if nc.is_connecting:
            return "CONNECTING"
        if nc.is_draining:
            return "DRAINING"
        if nc.is_closed and self._connect_task is not None and self._connect_task.done():
            return "CLOSED"
        return "DISCONNECTED"

    @property
    def is_connected(self) -> bool:
        """Connected and the stream is in place: publishes can be made durable now."""
        return self.nc.is_connected and self._stream_ready.is_set()

    @property
    def max_payload(self) -> int:
        """Largest message the server takes (1 MiB by default)."""
        return self.nc.max_payload if self.nc.is_connected else 1024 * 1024

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

    def on_reconnected(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` (synchronous, must not raise) after each NATS reconnect; returns the function
        that removes it."""
        self._reconnect_listeners.append(listener)
        return lambda: self._reconnect_listeners.remove(listener)

    # -- live tail ---------------------------------------------------------------------------------------
    def _assume_live_interest(self) -> None:
        # Never lowered: `inf` (deaf to announcements, see _connect) must survive reconnects and announcing.
        self._live_until = max(self._live_until, time.monotonic() + self.live_interest_timeout)

    async def _on_live_interest(self, _msg: Msg) -> None:
        # No await before the state is set: the server sent this announcement before any JetStream ack it
        # sends this connection afterwards, and nats-py runs this callback before the code waiting on such an
        # ack resumes - so an entry acknowledged after a hub's announcement reached the server is published.
        self._assume_live_interest()

    @property
    def live_interest(self) -> bool:
        """True while publish_live publishes: some hub announced clients within `live_interest_timeout`
        (LIVE_INTEREST_TIMEOUT by default), or this connection is younger than that, or the connection
        could not follow announcements (then always)."""
        return time.monotonic() < self._live_until

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
        if not (self.nc.is_connected and time.monotonic() < self._live_until):
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
                [url.strip() for url in self.url.split(",") if url.strip()],
                name=f"{self.name}-live",
                connect_timeout=self.connect_timeout,
                reconnect_wait=self.reconnect_wait,
                timeout=timeout,
                cb=cb,
                on_gap=on_gap,
            )
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"live-tail subscription failed: {type(exc).__name__}: {exc}") from exc
