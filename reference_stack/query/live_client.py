"""One live-tail client of the hub (live.py): its bounded queue, the gap markers in it, and its sender.

The hub offers entries a payload at a time (`Batch`: one ingestion request's entries, as UTF-8 JSON lines,
shared by every client whose filters select the same entries), so what a client costs per payload does not
grow with the payload: the entries that fit are appended in one C-level step and the rest are counted as
dropped in one addition. A client whose queue is full (a reader that stopped) costs O(1) per payload.

Liveness is ours, not aiohttp's `heartbeat`: aiohttp starts the pong deadline (heartbeat / 2) when the ping
is queued, behind megabytes of unsent entries, so a slow but live reader (a browser taking 25 s for 50,000
entries) was cut with 1006. Here the sender puts a ping in the stream every PING_EVERY_BYTES of entries, and
once per heartbeat tick when nothing else showed the client alive; any frame from the client (pongs
included) is proof of life, so a reader that keeps reading keeps answering. A client silent for DEAD_TICKS
ticks in a row has vanished (or stopped reading for that long): its connection is aborted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import socket
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from .filters import Filters

__all__ = [
    "DEAD_TICKS", "PING_EVERY_BYTES", "SEND_BUFFER_BYTES",
    "Batch", "Client", "Gap", "fan_out", "limit_send_buffer",
]

#: Kernel send buffer of a live-tail socket (SO_SNDBUF; Linux doubles it for its bookkeeping). Left to TCP
#: autotuning it grows to 4 MiB on loopback, so each client that stopped reading first swallowed ~25,000
#: entries, one send() each, before its queue filled and it cost nothing (r8 finding 1: 50 such clients kept
#: the event loop busy for seconds). 256 KiB still carries ~5 MB/s over a 50 ms round trip.
SEND_BUFFER_BYTES = 256 * 1024
#: Entry bytes sent between two pings in the stream: the pongs say how far the client has read, so a reader
#: gives a sign of life per this many bytes read (at 10 KB/s, one every ~26 s), whatever sits in the buffers.
PING_EVERY_BYTES = 256 * 1024
#: Heartbeat ticks in a row without any frame from the client (a ping went out after the first) before its
#: connection is aborted: with the hub's 20 s ticks, a vanished client is removed within 40-60 s.
DEAD_TICKS = 2


def limit_send_buffer(request: web.BaseRequest) -> None:
    """Set SO_SNDBUF = SEND_BUFFER_BYTES on the request's TCP socket (before its WebSocket upgrade is
    answered); a Unix socket (a worker's relay, already bounded by the kernel) or a failure is left alone."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class _Hub(Protocol):
    """What a client needs of its hub: the queue bounds (read at each offer, so tests may change them)."""

    queue_size: int
    queue_bytes: int


class Batch:
    """Entries offered to clients together: `lines` (bytes, one public entry each, valid UTF-8 JSON) and
    `ends[i]`, the bytes of lines[0..i] together (so what fits a byte budget is one bisection)."""

    __slots__ = ("ends", "lines")

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.lines = lines
        self.ends = list(itertools.accumulate(map(len, lines)))


class Gap:
    """Marks, inside a client's queue, where entries were dropped and how many."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Client:
    """One WebSocket, its filters, and up to `hub.queue_size` entries / `hub.queue_bytes` bytes of them (UTF-8
    JSON, each sent as one text message) waiting for its own sender task; `key_id` is the API key holding it
    (None with auth off)."""

    def __init__(
        self, ws: web.WebSocketResponse, filters: Filters, hub: _Hub, key_id: str | None = None
    ) -> None:
        self.ws = ws
        self.key_id = key_id
        self.filters = filters
        self.hub = hub
        self.queue: deque[bytes | Gap] = deque()
        self.queued = 0  # entries in the queue (gaps not counted)
        self.queued_bytes = 0  # their bytes
        self.wakeup = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        # Set, without an await, once the upgrade is about to be answered: from then on the promise holds, and
        # a gap in the live copies closes this socket (an earlier client gets a fresh announcement instead).
        self.promised = False
        self.transport: asyncio.Transport | None = None  # set once upgraded: aborted if the client is dead
        self.heard = 0  # frames received from the client (pongs included): its signs of life
        self._heard_at_tick = 0
        self._silent_ticks = 0
        self._ping_due = False
        self._unpinged = 0  # entry bytes sent since the last ping

    def tick(self) -> bool:
        """One heartbeat tick (the hub's, every HEARTBEAT seconds): False once the client was silent for
        DEAD_TICKS ticks in a row (the caller aborts it); after a silent tick, asks the sender for a ping."""
        if self.heard != self._heard_at_tick:
            self._heard_at_tick, self._silent_ticks = self.heard, 0
            return True
        self._silent_ticks += 1
        if self._silent_ticks >= DEAD_TICKS:
            return False
        self._ping_due = True
        self.wakeup.set()
        return True

    def offer(self, batch: Batch) -> int:
        """Queue the longest head of `batch` that fits both bounds and mark the rest as one gap. Never blocks;
        returns how many entries were dropped (the caller counts them in its metric, once per payload)."""
        total = len(batch.lines)
        if not total:
            return 0
        room = self.hub.queue_size - self.queued
        fits = 0
        if room > 0:
            fits = min(room, bisect.bisect_right(batch.ends, self.hub.queue_bytes - self.queued_bytes))
        if fits:
            self.queue.extend(batch.lines[:fits] if fits < total else batch.lines)
            self.queued += fits
            self.queued_bytes += batch.ends[fits - 1]
        dropped = total - fits
        if dropped:
            last = self.queue[-1] if self.queue else None
            gap = last if isinstance(last, Gap) else None
            if gap is None:
                gap = Gap()
                self.queue.append(gap)
            gap.count += dropped
        self.wakeup.set()
        return dropped

    async def send_forever(self) -> None:
        """Send queued entries and gap notices in order until cancelled (by the hub's drop)."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue or self._ping_due:
                if self._ping_due or self._unpinged >= PING_EVERY_BYTES:
                    # Behind the entries already sent: its pong comes once the client has read them.
                    self._ping_due, self._unpinged = False, 0
                    await self.ws.ping()
                    continue
                item = self.queue.popleft()
                if isinstance(item, Gap):
                    await self.ws.send_str(json.dumps({"type": "dropped", "count": item.count}))
                else:
                    self.queued -= 1
                    self.queued_bytes -= len(item)
                    self._unpinged += len(item)
                    # The bytes as they are (UTF-8): no per-client encoding of a shared entry.
                    await self.ws.send_frame(item, WSMsgType.TEXT)


_NO_FILTERS = Filters()


def fan_out(clients: Iterable[Client], payload: bytes) -> tuple[int, int]:
    """Offer one payload's entries (NDJSON of public entries) to `clients`; returns (entries dropped for full
    queues, summed over the clients; lines that were not JSON objects, skipped when some client filters).
    Lines are split and (only if some client filters) parsed once, each distinct filter selects once, and
    each client takes its batch in one step: O(entries x distinct filters + clients), not O(entries x
    clients) (r8 finding 1)."""
    lines = [raw for raw in payload.splitlines() if raw.strip()]
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:  # never from our ingestion; a text frame must still be valid UTF-8
        lines = [raw.decode("utf-8", "replace").encode() for raw in lines]
    groups: dict[Filters, list[Client]] = {}
    for client in clients:
        groups.setdefault(client.filters, []).append(client)
    entries: list[dict[str, Any]] = []  # lines parsed, only when some client filters
    bad = 0
    if any(filters != _NO_FILTERS for filters in groups):
        kept: list[bytes] = []
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and entry:
                entries.append(entry)
                kept.append(raw)
        bad, lines = len(lines) - len(kept), kept
    dropped = 0
    for filters, members in groups.items():
        if filters == _NO_FILTERS:
            batch = Batch(lines)
        else:
            pairs = zip(lines, entries, strict=True)
            batch = Batch([raw for raw, entry in pairs if filters.matches(entry)])
        for client in members:
            dropped += client.offer(batch)
    return dropped, bad
