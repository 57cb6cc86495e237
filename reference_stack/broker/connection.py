"""The broker's NATS connection (`Connection`, which `broker.Broker` extends with publishing): connecting
and reconnecting forever, the streams kept in place on it, and following live-tail interest.

Separate from publishing (broker.py) because this is the connection's own life, the same whatever a role sends
on it. Starting while NATS is down must not crash a role: `start()` returns at once and connects in the
background (forever, `reconnect_wait` apart); until then `is_connected` is False and ingestion answers 503.
After a reconnect the streams are ensured again (the server may have come back with an empty store) and the
listeners of `on_reconnected` are told.

Live-tail interest (#14): every connection follows the announcements on LIVE_INTEREST_SUBJECT (`live_interest`
is true until LIVE_INTEREST_TIMEOUT after the last one heard). A connection that is new or re-established
assumes interest for LIVE_INTEREST_TIMEOUT, so a process that started or reconnected while clients watch
publishes before it hears its first announcement; one that cannot subscribe to them assumes interest forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ..auth.redact import redact
from ..config import LIVE_INTEREST_SUBJECT, STREAM_NAME, check_at_least, check_positive
from .stopping import ClosingGuard, cancel_and_wait
from .streams import DEFAULT_DUPLICATE_WINDOW, ensure_streams

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_PUBLISH_TIMEOUT",
    "DEFAULT_RECONNECT_WAIT",
    "LIVE_INTEREST_INTERVAL",
    "LIVE_INTEREST_TIMEOUT",
    "Connection",
]

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_RECONNECT_WAIT = 0.5
DEFAULT_PUBLISH_TIMEOUT = 5.0
DEFAULT_DRAIN_TIMEOUT = 5.0
#: At most one "slow consumer" line per this many seconds (the next one counts the drops in between).
_SLOW_CONSUMER_LOG_INTERVAL = 10.0
#: A live-tail hub with clients announces them this often (seconds). One small message per hub per interval
#: while someone watches; shorter only makes ingestion stop sooner after the last client leaves.
LIVE_INTEREST_INTERVAL = 2.0
#: Ingestion publishes live copies until this long after the last announcement it heard (seconds). Fifteen
#: intervals: a hub whose event loop stalls for several seconds (GC, swap, a paused container: 4-9 s were
#: seen to cut clients off at 6 s) keeps its clients' entries coming. The only cost of a long timeout is that
#: ingestion keeps publishing live copies this long after the last client left. A hub whose announcements
#: lapse beyond it anyway closes its clients (query/live_feed.py), so a gap is never silent.
LIVE_INTEREST_TIMEOUT = 15 * LIVE_INTEREST_INTERVAL


class Connection:
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
        self._guard = ClosingGuard()  # close() began: connect attempts end (stopping.py)
        self._unreachable_said = False  # the "cannot reach NATS" line was printed for this outage
        self._live_until = 0.0  # monotonic time until which publish_live publishes (see the module docstring)
        self._reconnect_listeners: list[Callable[[], None]] = []
        self._slow_said = -_SLOW_CONSUMER_LOG_INTERVAL  # monotonic time of the last slow-consumer line
        self._slow_dropped = 0  # messages dropped since that line

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
            servers=self.servers,
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
        # Past close(), a connect loop that survived its cancel ends at this failed attempt (stopping.py).
        self._guard.check(self._connect_task, getattr(self.nc, "_reconnection_task", None))
        # While not connected, each failed attempt lands here: say it once per outage, at ERROR, so a role
        # started against a wrong or down NATS_URL does not look healthy in its own log.
        if not self.nc.is_connected and not self._guard.closing and not self._unreachable_said:
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
        if not self._guard.closing:
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
        """Stop connecting, flush and close, whatever state the connection is in (never connected,
        reconnecting, connected): each of its four steps (the connect task, the stream task, flush, close) is
        bounded by `drain_timeout` seconds. Safe to call twice."""
        self._guard.closing = True
        for task in (self._connect_task, self._ensure_task):
            # Not a bare cancel-and-await: nats-py's connect loop can swallow one cancellation (stopping.py).
            await cancel_and_wait(task, drain_timeout, what=f"the NATS connect to {redact(self.url)}")
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
    def servers(self) -> list[str]:
        """The server URLs of `url` (a cluster: `nats://a:4222,nats://b:4222`)."""
        return [url.strip() for url in self.url.split(",") if url.strip()]

    @property
    def is_connected(self) -> bool:
        """Connected and the stream is in place: publishes can be made durable now."""
        return self.nc.is_connected and self._stream_ready.is_set()

    @property
    def max_payload(self) -> int:
        """Largest message the server takes (1 MiB by default)."""
        return self.nc.max_payload if self.nc.is_connected else 1024 * 1024

    def on_reconnected(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` (synchronous, must not raise) after each NATS reconnect; returns the function
        that removes it."""
        self._reconnect_listeners.append(listener)
        return lambda: self._reconnect_listeners.remove(listener)

    # -- live-tail interest, as followed -----------------------------------------------------------------
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
