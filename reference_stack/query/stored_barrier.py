"""Read-your-acknowledged-writes for the query API: `GET /api/logs?settle=true` answers only once everything
ingestion had acknowledged (202) when the request arrived is stored, or after SETTLE_TIMEOUT.

Why: a 202 means the batch is in JetStream, not yet in ClickHouse (the processor inserts it a few hundred ms
later). The dashboard's Live view opens its socket and then asks for history; an entry accepted just before
the socket opened was in neither (review r8 finding 4). With `settle=true` the history request waits for it.

How: the stream is a work queue (broker/streams.py): a message leaves it only when the processor acks it,
after its rows are inserted (or it is dead-lettered). So "everything the stream held at arrival is stored"
is `first_seq > last_seq_at_arrival` in a later `stream_info` (a stream emptied by acks has first_seq =
last_seq + 1), or no message left at all (a stream that never held one reports first_seq = last_seq = 0),
or - when the stream still holds messages at or below that point - the processor's consumer has acked past it
(`ack_floor`): after a nats-server SIGKILL the server can keep a message whose ack it had already recorded (a
stack review: stream first_seq 300, consumer ack floor 705, nothing pending), which is never delivered again
and would otherwise hold every `settle=true` request for the whole SETTLE_TIMEOUT, forever.
One poller per process serves every waiting request: at most one `stream_info` per SETTLE_POLL_INTERVAL
however many requests wait, and none while nobody waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aiohttp import web

from ..config import CONSUMER_NAME, STREAM_NAME
from ..http.resources import BROKER

__all__ = ["BARRIER", "SETTLE_POLL_INTERVAL", "SETTLE_TIMEOUT", "StoredBarrier"]

log = logging.getLogger(__name__)

#: The longest a `settle=true` request waits for the processor (seconds). The processor stores a batch
#: within ~0.3 s at the defaults; 5 s covers a busy moment, and a stalled processor costs a page at most 5 s.
SETTLE_TIMEOUT = 5.0
#: Seconds between two `stream_info` requests while requests wait.
SETTLE_POLL_INTERVAL = 0.05
#: The deadline of one `stream_info` request (seconds).
_INFO_TIMEOUT = 1.0


@dataclasses.dataclass
class _Waiter:
    after_poll: int  # the poll count when it arrived: only a poll started later may set its target
    done: asyncio.Future[None]
    target: int | None = None  # the stream's last sequence seen by the first such poll


class StoredBarrier:
    """The waits of one process's `settle=true` requests on the stream of `app[BROKER]`."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._waiters: list[_Waiter] = []
        self._polls = 0
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """True once every message the stream held when this was called has left it (stored or dead-lettered);
        False after `timeout` seconds (the processor is behind or NATS does not answer)."""
        waiter = _Waiter(self._polls, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="oglog-settle-poller")
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _poll(self) -> None:
        while self._waiters:
            self._polls += 1
            started = self._polls
            try:
                js = self._app[BROKER].js
                state = (await asyncio.wait_for(js.stream_info(STREAM_NAME), _INFO_TIMEOUT)).state
            except Exception as exc:  # NATS down or slow: the waiters' own deadlines end their wait
                log.debug("settle: stream_info failed: %s", exc)
            else:
                ack_floor: int | None = None
                for waiter in list(self._waiters):
                    if waiter.after_poll >= started:
                        continue  # arrived after this request was sent: it may not have seen its entries
                    if waiter.target is None:
                        waiter.target = state.last_seq
                    stored = state.messages == 0 or state.first_seq > waiter.target
                    if not stored:
                        if ack_floor is None:
                            ack_floor = await self._ack_floor()
                        stored = ack_floor >= waiter.target
                    if stored and not waiter.done.done():
                        waiter.done.set_result(None)
                        self._waiters.remove(waiter)
            if self._waiters:
                await asyncio.sleep(SETTLE_POLL_INTERVAL)


    async def _ack_floor(self) -> int:
        """The stream sequence up to which the processor's consumer has acked every message; 0 when unknown
        (no consumer yet, NATS slow or down: the stream's own state then decides)."""
        try:
            js = self._app[BROKER].js
            info = await asyncio.wait_for(js.consumer_info(STREAM_NAME, CONSUMER_NAME), _INFO_TIMEOUT)
            return int(info.ack_floor.stream_seq or 0) if info.ack_floor is not None else 0
        except Exception as exc:
            log.debug("settle: consumer_info failed: %s", exc)
            return 0


#: The app's barrier, put there by query.setup (it reads app[BROKER] only when polling: the broker exists
#: once the app has started).
BARRIER: web.AppKey[StoredBarrier] = web.AppKey("oglog_stored_barrier", StoredBarrier)
