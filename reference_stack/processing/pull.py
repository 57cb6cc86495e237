"""The processor's pulls from its durable consumer: ONE pull request outstanding at a time, bytes-bounded.

Why not nats-py's `fetch` (#14, "Slow Consumer Detected"): a fetch that times out on the client side leaves
its pull request alive on the server, and the next fetch asks for more while the earlier request's messages
are still in transit. In `oglog stack up` the event loop also serves ingestion and queries; under an HTTP
flood it reads the NATS socket slowly (about one 256 KiB read per loop iteration), fetches kept timing out,
and the bytes the server had to write to this connection grew until it closed it (MaxPending of 64 MiB, or
its 10 s WriteDeadline: 29 MB pending in the reproduction). Every publish ack in transit on the shared
connection was lost with it, so ingestion answered 503 for bodies already stored.

Here a request asks for at most `max_bytes` (JetStream enforces it server side) and the next request is only
sent once the closing status of the one before was read: 404 no messages, 408 expired, 409 Batch Completed or
Message Size Exceeds MaxBytes (with `max_bytes` set the server ends every request with one of these, after
its last message, so it is read only once they all were). Bytes the server owes this subscription therefore
never exceed one request's `max_bytes`, however slowly the loop reads. A client-side timeout only returns
control to the caller; the request stays open and the next `fetch` keeps reading it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

__all__ = ["DEFAULT_PULL_EXPIRES", "STALE_GRACE", "Puller"]

log = logging.getLogger(__name__)

#: A pull request waits this long (seconds) on the server for messages before it ends with 408. Long: an idle
#: processor sends one small request per expiry, and a message published meanwhile is delivered at once.
DEFAULT_PULL_EXPIRES = 5.0
#: A request whose closing status has not arrived this long (seconds) after it expired on the server is
#: taken as ended (only a status lost with a reconnect does that), so the consumer never stops for good.
STALE_GRACE = 30.0
#: JetStream API prefix of the broker's JetStream context (no domain).
_API_PREFIX = "$JS.API"
#: Status codes that end a pull request (the server sends nothing more for it after one of them).
_ENDS_REQUEST = {api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT}


class Puller:
    """Pulls messages of durable `consumer` on `stream` over `nc`, one request outstanding at a time.

    `max_bytes`: payload bytes one request may deliver (>= one message, or the server refuses every one with
    409 Message Size Exceeds MaxBytes). `expires`: seconds a request waits on the server. ValueError if
    either is not positive."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        stream: str,
        consumer: str,
        max_bytes: int,
        expires: float = DEFAULT_PULL_EXPIRES,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        if expires <= 0:
            raise ValueError(f"expires must be positive, got {expires}")
        self.nc = nc
        self.max_bytes = max_bytes
        self.expires = expires
        self._next_subject = f"{_API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()  # at most one request's messages
        self._open = False  # a request was sent and its closing status not read yet
        self._sent_at = 0.0  # monotonic time the open request was sent
        self._error: nats.js.errors.APIError | None = None  # a status that is not a request's normal end
        #: Pull requests sent and closing statuses read (tests and the bench compare them).
        self.requests = 0
        self.ends = 0

    async def start(self) -> None:
        """Subscribe the reply inbox (nats-py re-subscribes it after a reconnect)."""
        self._sub = await self.nc.subscribe(self._inbox, cb=self._on_msg)

    async def close(self) -> None:
        """Unsubscribe: the server drops a request whose reply subject nobody listens to."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    def reset(self) -> None:
        """After a reconnect: the server forgot the requests of the closed connection."""
        self._open = False

    @property
    def open(self) -> bool:
        """A request is outstanding (its messages or its closing status are still to be read)."""
        return self._open

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(api.Header.STATUS)
        if not status:
            self._queue.put_nowait(msg)
            return
        if status == api.StatusCode.CONTROL_MESSAGE:  # idle heartbeat: not asked for, nothing to do
            return
        self._open = False
        self.ends += 1
        description = headers.get(api.Header.DESCRIPTION, "")
        if status not in _ENDS_REQUEST or "deleted" in description.lower():
            # e.g. 409 Consumer Deleted: the caller re-creates the consumer and binds again.
            code = int(status) if status.isdigit() else None
            self._error = nats.js.errors.APIError(code=code, description=description or status)
        elif status == api.StatusCode.CONFLICT:
            log.debug("processor: pull request ended: %s %s", status, description)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Messages delivered within `timeout` seconds (at most `batch` per request): waits for the first,
        then takes every one already read; [] if none came. Sends a request only when none is open.
        Raises nats.js.errors.APIError when the server ended a request with an error (consumer deleted)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        now = time.monotonic()
        if self._open and now - self._sent_at > self.expires + STALE_GRACE:
            log.warning(
                "processor: no end of a pull request %.0fs after it expired; sending the next one",
                now - self._sent_at - self.expires,
            )
            self._open = False
        if not self._open:
            await self._request(batch)
        msgs: list[Msg] = []
        try:
            msgs.append(await asyncio.wait_for(self._queue.get(), timeout))
        except asyncio.TimeoutError:
            return msgs
        while not self._queue.empty():
            msgs.append(self._queue.get_nowait())
        return msgs

    async def _request(self, batch: int) -> None:
        request = {"batch": batch, "max_bytes": self.max_bytes, "expires": int(self.expires * 1e9)}
        self._open = True
        self._sent_at = time.monotonic()
        self.requests += 1
        await self.nc.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)
