"""Live tail: GET /ws/live pushes every accepted entry (optionally filtered) to WebSocket clients.

One core-NATS subscription per app (on LIVE_SUBJECT, row payloads published by ingestion, made public entries
by `row_codec.live_entries`) feeds every client. It exists only while the app has clients (#14): the hub's
NATS side (`live_feed.LiveFeed`) makes it and announces the hub's interest for the first client, whose
upgrade waits for both (up to READY_TIMEOUT, else 503), and ends both after the last client's departure;
ingestion stops publishing live copies LIVE_INTEREST_TIMEOUT later. The promise: a client receives every
entry whose JetStream publish is acknowledged after its upgrade answer (101) was sent, or its socket is
closed with CLOSE_INTERRUPTED (1013, reason INTERRUPTED_REASON) so it knows entries may be missing and
reconnects; entries acknowledged earlier may appear too. The hub closes its promised clients so whenever
its NATS side finds that entries may have been missed (`live_feed` lists when).

Each client has a bounded queue and its own sender task, so a slow reader only fills its own queue: past
QUEUE_SIZE entries or QUEUE_BYTES of them, new ones are dropped for that client, and it then receives
`{"type": "dropped", "count": n}` at the position of the gap. One request's entries arrive at once, so the
queue holds two of the largest requests the door takes: an idle reader never loses a burst. Entries are
sent in the public shape (one JSON object, UTF-8, per WebSocket text message), so the live tail and
GET /api/logs show the same shape. A payload is offered to all clients at once (`live_client.fan_out`), so a
client that stopped reading costs O(1) per payload. Admission (`live_admission`): MAX_CLIENTS in all, a share
kept for others past MAX_CLIENTS_PER_CLIENT per client (429), the per-key cap with auth on (429).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web
from oglogstream import wire

from ..auth.keys import RELOAD_INTERVAL
from ..auth.middleware import ACCESS, KEY_RECORD, WS_PROTOCOL
from ..broker.broker import BrokerUnavailable
from ..http.boundary import Problem
from ..http.resources import CONFIG, METRICS
from ..http.share import SharePolicy
from ..ingestion import row_codec
from .filters import Filters, ParamError, check_known
from .live_admission import Admission
from .live_client import DEAD_TICKS, Client, fan_out, limit_send_buffer
from .live_feed import LAPSE_MARGIN, READY_TIMEOUT, LiveFeed
from .live_metrics import live_series

__all__ = [
    "CLOSE_INTERRUPTED",
    "CLOSE_KEY_REVOKED",
    "CLOSE_TIMEOUT",
    "HEARTBEAT",
    "INTERRUPTED_REASON",
    "LAPSE_MARGIN",
    "LIVE",
    "MAX_CLIENTS",
    "MAX_CLIENTS_PER_CLIENT",
    "QUEUE_BYTES",
    "QUEUE_SIZE",
    "READY_TIMEOUT",
    "LiveHub",
    "setup",
]

log = logging.getLogger(__name__)

#: Entries buffered per client before drops start: two of the largest requests (`wire.MAX_BATCH_ENTRIES`),
#: since one request's entries are queued at once. It was 1,000, under the SDK's own batch of 4,000: a
#: tail with an idle reader lost 3,000 of every such batch and blamed the reader. The entries are shared by
#: the clients (one str each); a queue slot costs a pointer.
QUEUE_SIZE = 2 * wire.MAX_BATCH_ENTRIES
#: Bytes of entries buffered per client before drops start, whichever of the two bounds comes first: what
#: a client that stopped reading keeps alive (entries of 50 KiB would make QUEUE_SIZE alone ~1 GB).
QUEUE_BYTES = 16 * 1024 * 1024
#: Clients per process; one more gets 503 (each holds a socket, a task and up to QUEUE_BYTES of entries).
MAX_CLIENTS = 1000
#: Sockets one client (`ingestion.slots.client_of`: its address, and its key with auth on) may always hold;
#: past it, one more only while this many stay free for the others (`http.share.SharePolicy`, as for
#: ingestion's body slots), else 429. So one process opening sockets in a loop holds at most
#: MAX_CLIENTS - MAX_CLIENTS_PER_CLIENT and other addresses still get in (r8 finding 2).
MAX_CLIENTS_PER_CLIENT = MAX_CLIENTS // 4
#: Seconds between the hub's heartbeat ticks (`Client.tick`): a client that sent nothing (not even the pong
#: of a ping) for DEAD_TICKS ticks in a row is aborted, so a vanished client goes within 40-60 s. Not
#: aiohttp's `heartbeat`, whose pong deadline runs while the ping waits behind unsent entries (live_client).
HEARTBEAT = 20.0
#: Bound on closing one client at shutdown (a client that stopped reading cannot take the close frame).
CLOSE_TIMEOUT = 2.0
#: Close code for a socket whose key was revoked or lost the `query` scope (1008: policy violation); the
#: reason says which. A key is re-checked every RELOAD_INTERVAL, like a new request's.
CLOSE_KEY_REVOKED = 1008
#: Close code for sockets that may have missed entries (1013: try again later); `oglog tail` and the
#: dashboard reconnect on it, and the reason says why.
CLOSE_INTERRUPTED = 1013
INTERRUPTED_REASON = "live tail interrupted, entries may be missing; reconnect"


class LiveHub:
    """The app's live-tail clients, their route and supervision; its NATS side is `feed` (`LiveFeed`)."""

    def __init__(
        self,
        app: web.Application,
        *,
        queue_size: int = QUEUE_SIZE,
        queue_bytes: int = QUEUE_BYTES,
        max_clients: int = MAX_CLIENTS,
        max_per_client: int = MAX_CLIENTS_PER_CLIENT,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        if queue_bytes < 1:
            raise ValueError(f"queue_bytes: must be >= 1, got {queue_bytes}")
        self.app = app
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        # ValueError for a bound < 1 or max_per_client > max_clients.
        self.admission = Admission(SharePolicy(
            max_clients, max_per_client, capacity_name="max_clients", share_name="max_per_client"
        ))
        self.clients: set[Client] = set()
        self.feed = LiveFeed(app, self.clients, self._on_payload, self._interrupt)
        self._closing: set[asyncio.Task[None]] = set()  # interrupted clients' closes under way
        self._stopping = asyncio.Event()
        self._key_watch: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.heartbeat = HEARTBEAT  # seconds between ticks (read at each tick, so tests may shorten it)
        self.connected, self.dropped, self.interrupted, self.bad_payloads = live_series(
            app[METRICS].registry
        )

    async def start(self) -> None:
        self.feed.start()
        access = self.app.get(ACCESS)
        if access is not None and access.store is not None:
            self._key_watch = asyncio.create_task(self._watch_keys(), name="oglog-live-keys")
        self._heartbeat = asyncio.create_task(self._beat(), name="oglog-live-heartbeat")

    async def _beat(self) -> None:
        """Every `heartbeat` seconds, tick each upgraded client; abort those silent for DEAD_TICKS ticks (the
        client sees 1006, as with a lost connection; its handler then drops it)."""
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat)
            for client in list(self.clients):
                if client.transport is not None and not client.tick():
                    log.info(
                        "live tail: a client sent nothing, not even a pong, for %d heartbeats of %gs; "
                        "aborting its connection", DEAD_TICKS, self.heartbeat,
                    )
                    client.transport.abort()

    def _interrupt(self, reason: str, detail: str) -> None:
        """Close every promised client with CLOSE_INTERRUPTED (removed from the fan-out now, closed in the
        background so the caller - the announcer, or a NATS callback - is not held up by slow sockets)."""
        clients = [client for client in self.clients if client.promised]
        if not clients:
            return
        log.warning(
            "live tail: %s; closing %d client(s) (%d %s) so they reconnect",
            detail, len(clients), CLOSE_INTERRUPTED, INTERRUPTED_REASON,
        )
        self.interrupted.labels(reason).inc(len(clients))
        message = INTERRUPTED_REASON.encode()
        for client in clients:
            self.clients.discard(client)
            self.connected.dec()
            task = asyncio.create_task(
                self._drop(client, code=CLOSE_INTERRUPTED, message=message), name="oglog-live-interrupt"
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _watch_keys(self) -> None:
        """Close sockets whose key was revoked or lost `query` since they connected: a key is checked when a
        socket opens, and a revocation must end what that key already holds, not only its next request."""
        store = self.app[ACCESS].store
        assert store is not None
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RELOAD_INTERVAL)
            ended = []
            for client in list(self.clients):
                if client.key_id is None:
                    continue
                record = store.current(client.key_id)
                if record is None:
                    ended.append((client, b"API key revoked"))
                elif "query" not in record.scopes:
                    ended.append((client, b"API key lacks the query scope"))
            for client, reason in ended:
                log.info("live tail: closing a socket of key %s: %s", client.key_id, reason.decode())
                await self._drop(client, code=CLOSE_KEY_REVOKED, message=reason)

    async def _on_payload(self, payload: bytes) -> None:
        if self.clients:  # rows become public entries here, only when someone watches (#14)
            self._fan_out(row_codec.live_entries(payload))
        # NATS hands over queued payloads back to back; yielding here lets the senders drain in between, so a
        # burst does not overflow the queues of clients that keep up.
        await asyncio.sleep(0)

    def _fan_out(self, payload: bytes) -> None:
        dropped, bad = fan_out(self.clients, payload)
        if bad:
            self.bad_payloads.inc(bad)
        if dropped:  # once per payload, not per entry and client (r8 finding 1)
            self.dropped.inc(dropped)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET /ws/live: validate filters (400 before the upgrade), then stream until either side closes."""
        try:
            check_known(request.query, Filters.LIVE_PARAMS)
            filters = Filters.from_query(request.query, time_range=False)
        except ParamError as exc:
            raise Problem(400, "invalid query parameter", exc.field, exc.reason) from None
        if self._stopping.is_set():
            raise Problem(503, "unavailable", "server", "shutting down", headers={"Retry-After": "1"})
        key = request.get(KEY_RECORD)  # set by the access middleware when auth is on
        key_id = key.id if key is not None else None
        # Refusals first, also for a plain GET: a worker's relay repeats a refused upgrade so to get the body.
        ticket = self.admission.admit(
            request, len(self.clients), key_id, self.app[CONFIG].live_sockets_per_key
        )
        # A browser offers [WS_PROTOCOL, "oglog.key.KEY"]: it needs one selected back (never the key one).
        # autoping off: the pongs are the client's signs of life (Client.tick), so they are counted here.
        ws = web.WebSocketResponse(autoping=False, max_msg_size=64 * 1024, protocols=(WS_PROTOCOL,))
        if not ws.can_prepare(request).ok:  # not a WebSocket upgrade: aiohttp's 400, without touching NATS
            self.admission.release(ticket)
            await ws.prepare(request)
        client = Client(ws, filters, self, key_id)
        # In the fan-out before the upgrade: entries arriving meanwhile are queued, sent once it is done.
        self.clients.add(client)
        self.connected.inc()
        try:
            try:
                await self.feed.watch()
            except (BrokerUnavailable, asyncio.TimeoutError, ConnectionError) as exc:
                reason = str(exc) or f"not ready within {READY_TIMEOUT:g}s"
                raise Problem(
                    503, "unavailable", "server", f"live tail unavailable: {reason}",
                    headers={"Retry-After": "1"},
                ) from None
            if self._stopping.is_set():
                raise Problem(503, "unavailable", "server", "shutting down", headers={"Retry-After": "1"})
            client.promised = True
            limit_send_buffer(request)
            await ws.prepare(request)
            client.transport = request.transport
            client.sender = asyncio.create_task(client.send_forever(), name="oglog-live-send")
            async for msg in ws:  # clients have nothing to say but pongs; reading notices their close
                client.heard += 1
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
        finally:
            self.admission.release(ticket)
            await self._drop(client)
            await self.feed.unwatch()
        return ws

    async def _drop(
        self, client: Client, *, code: int = 1001, message: bytes = b"server shutting down"
    ) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.connected.dec()
        if client.sender is not None:
            client.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client.sender
        if client.ws.prepared and not client.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.ws.close(code=code, message=message), CLOSE_TIMEOUT
                )

    async def close_clients(self, _app: web.Application | None = None) -> None:
        """on_shutdown: refuse new clients and close every WebSocket (1001 going away), each bounded."""
        self._stopping.set()
        await asyncio.gather(*(self._drop(client) for client in list(self.clients)))

    async def stop(self) -> None:
        """Cleanup: end the announcements and the subscription, the key watch and the heartbeat, then close
        every client."""
        self._stopping.set()
        await self.feed.stop()
        for task in (self._key_watch, self._heartbeat):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.close_clients()
        await asyncio.gather(*list(self._closing))


LIVE: web.AppKey[LiveHub] = web.AppKey("oglog_live", LiveHub)


async def _live_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[LIVE]
    await hub.start()
    try:
        yield
    finally:
        await hub.stop()


def setup(app: web.Application) -> None:
    """Add GET /ws/live (needs the broker context registered before this)."""
    hub = LiveHub(app)
    app[LIVE] = hub
    app.cleanup_ctx.append(_live_ctx)
    app.on_shutdown.append(hub.close_clients)
    app.router.add_get("/ws/live", hub.serve)
