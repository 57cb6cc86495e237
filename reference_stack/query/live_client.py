"""One live-tail client of the hub (live.py): its bounded queue, the gap markers in it, and its sender."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Protocol

from aiohttp import web
from prometheus_client import Counter

from .filters import Filters

__all__ = ["Client", "Gap"]


class _Hub(Protocol):
    """What a client needs of its hub: the queue bounds and the drop counter."""

    queue_size: int
    queue_bytes: int
    dropped: Counter


class Gap:
    """Marks, inside a client's queue, where entries were dropped and how many."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Client:
    """One WebSocket, its filters, and up to `hub.queue_size` entries / `hub.queue_bytes` of them (str, one
    JSON object each, ASCII: `json.dumps`) waiting for
    its own sender task; `key_id` is the API key holding it (None with auth off)."""

    def __init__(
        self, ws: web.WebSocketResponse, filters: Filters, hub: _Hub, key_id: str | None = None
    ) -> None:
        self.ws = ws
        self.key_id = key_id
        self.filters = filters
        self.hub = hub
        self.queue: deque[str | Gap] = deque()
        self.queued = 0  # entries in the queue (gaps not counted)
        self.queued_bytes = 0  # their length
        self.wakeup = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        # Set, without an await, once the upgrade is about to be answered: from then on the promise holds, and
        # a gap in the live copies closes this socket (an earlier client gets a fresh announcement instead).
        self.promised = False

    def offer(self, line: str) -> None:
        """Queue one entry, or count it as dropped when the queue is full. Never blocks."""
        if self.queued >= self.hub.queue_size or self.queued_bytes + len(line) > self.hub.queue_bytes:
            gap = self.queue[-1] if self.queue and isinstance(self.queue[-1], Gap) else None
            if gap is None:
                gap = Gap()
                self.queue.append(gap)
            gap.count += 1
            self.hub.dropped.inc()
        else:
            self.queue.append(line)
            self.queued += 1
            self.queued_bytes += len(line)
        self.wakeup.set()

    async def send_forever(self) -> None:
        """Send queued entries and gap notices in order until cancelled (by the hub's drop)."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, Gap):
                    await self.ws.send_str(json.dumps({"type": "dropped", "count": item.count}))
                else:
                    self.queued -= 1
                    self.queued_bytes -= len(item)
                    await self.ws.send_str(item)
