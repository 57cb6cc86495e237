"""The stack's HTTP boundary: one problem type, one error middleware, one body reader, the connection limits.

Every route raises `Problem` (or a domain error such as `BrokerUnavailable`) and `problem_middleware` renders
it as RFC 9457 `application/problem+json`:

    {"type": "urn:oglogstream:problem:invalid", "title": "validation failed", "status": 400,
     "detail": "timestamp: ...", "field": "timestamp", "reason": "...",
     "error": "validation failed", "details": [{"field": "timestamp", "reason": "..."}]}

`error`/`details` are the stack's original error keys, kept for existing clients. OTLP answers with its own
google.rpc.Status bodies (the OTLP spec requires them) but uses the same `Problem` and body reader. An
unexpected exception becomes a 500 problem that names no internals; it is logged once, on one line.

Connection limits (slowloris): `IDLE_TIMEOUT` closes a connection that has not completed a request's headers
that long after it opened or after its last response (aiohttp's keep-alive timer, armed at connect); the body
reader answers 408 when no body byte arrives for `BODY_IDLE_TIMEOUT`, or when the bytes actually received fall
below `MIN_BODY_RATE` after a grace of `BODY_TIMEOUT` (a declared Content-Length buys no time). Routes with a
limited number of in-flight bodies call `await body_started(request)` before taking a slot, so connections
that declare a body and send nothing (or a few bytes) never hold one.
Request bodies are NOT decompressed by aiohttp (`auto_decompress=False`, see `HANDLER_ARGS`): `read_body`
inflates gzip itself, verifies its trailer (CRC32 and length), and stops at the decompressed limit - a refused
body is never inflated further, and the connection is closed instead of drained.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from oglogstream.wire import BATCH_ID_HEADER, PROBLEM_CONTENT_TYPE

from ..auth.redact import redact
from ..broker.broker import BrokerUnavailable
from ..ingestion import row_codec

__all__ = [
    "BODY_IDLE_TIMEOUT",
    "BODY_TIMEOUT",
    "BROKER_RETRY_AFTER_SECONDS",
    "HANDLER_ARGS",
    "IDLE_TIMEOUT",
    "MIN_BODY_RATE",
    "PROBLEM_CONTENT_TYPE",
    "SLOT_HEAD_BYTES",
    "Problem",
    "body_started",
    "check_media",
    "problem_middleware",
    "problem_response",
    "read_body",
    "to_problem",
    "too_large",
]

log = logging.getLogger(__name__)


#: Seconds a connection may stay open without completing a request's headers, counted from its opening or
#: from its previous response (aiohttp has one timer for both). Longer than the SDK's keep-alive expiry
#: (30 s), so the SDK closes an idle connection first and never races a request against the server's close.
IDLE_TIMEOUT = 35.0
#: Seconds a request body may go without a single byte arriving (before its first byte or between two reads):
#: an idle body ends in 408 after this long, whatever its declared Content-Length.
BODY_IDLE_TIMEOUT = 5.0
#: Seconds of grace every request body gets before the MIN_BODY_RATE floor applies.
BODY_TIMEOUT = 10.0
#: Bytes per second a body must average after BODY_TIMEOUT, counted on the bytes RECEIVED: at t seconds from
#: the request's start at least (t - BODY_TIMEOUT) * MIN_BODY_RATE bytes must have arrived (the largest body,
#: 8 MiB, may take 10 s + 82 s). A client that trickles is cut; the size it declares buys it no time.
MIN_BODY_RATE = 100 * 1024
#: What a 503 for an unreachable broker tells the client to wait (the broker reconnects every 0.5 s).
BROKER_RETRY_AFTER_SECONDS = 2
#: aiohttp server settings for every app (`web.Application(handler_args=HANDLER_ARGS)`).
HANDLER_ARGS: dict[str, Any] = {"auto_decompress": False, "keepalive_timeout": IDLE_TIMEOUT}

#: Bytes of a body (or all of a smaller one) that must have arrived before it may take an in-flight slot
#: (body_started). aiohttp buffers about this much per connection anyway, so waiting costs no extra memory.
SLOT_HEAD_BYTES = 64 * 1024

_GZIP = ("gzip", "x-gzip")
#: Request keys body_started uses to hand its first chunk and start time to read_body.
_FIRST_CHUNK = web.RequestKey("oglog_first_body_chunk", bytes)
_BODY_STARTED_AT = web.RequestKey("oglog_body_started_at", float)
_READ_CHUNK = 64 * 1024
#: Inflated bytes per zlib call before the reader yields to the event loop (about 1 ms of work).
_INFLATE_STEP = 1024 * 1024
_KIND_BY_STATUS = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_type",
    429: "overloaded",
    500: "internal",
    503: "unavailable",
}


class Problem(Exception):
    """An HTTP error answer: `status`, a short `title` (also the legacy `error` key), the `field` at fault
    and the `reason`; `details` (default: that one field/reason pair) lists several; `extra` keys are merged
    into the body; `headers` (e.g. Retry-After) go on the response; `kind` overrides the one derived from
    the status."""

    def __init__(
        self,
        status: int,
        title: str,
        field: str,
        reason: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(f"{field}: {reason}")
        self._kind = kind
        self.status, self.title, self.field, self.reason = status, title, field, reason
        self.details = details if details is not None else [{"field": field, "reason": reason}]
        self.headers = headers
        self.extra = extra or {}

    @property
    def kind(self) -> str:
        """`invalid`, `too_large`, `unsupported_type`, `overloaded`, `timeout`, `unavailable`, ... (also
        the `reason` label of `oglog_entries_rejected_total`)."""
        return self._kind or _KIND_BY_STATUS.get(self.status, "other")

    @property
    def detail(self) -> str:
        return str(self)


def too_large(limit: int, what: str = "body", unit: str = "") -> Problem:
    """413 naming `what` and its limit, e.g. too_large(8388608, "body as sent", "bytes")."""
    bound = f"{limit} {unit}" if unit else str(limit)
    return Problem(413, "payload too large", "body", f"{what} must be at most {bound}")


#: Longest client value an error answer quotes back; longer ones, and key-shaped ones (a token of 16+ letters,
#: digits and base64/URL marks), become "<N characters>": a key pasted into the wrong parameter must not come
#: back in a body that proxies, browsers and crash reporters keep.
MAX_ECHO_CHARS = 64
_KEYISH = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])[A-Za-z0-9._~+/=-]{16,}")
_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")


def _withheld(value: str) -> bool:
    return len(value) > MAX_ECHO_CHARS or bool(_KEYISH.fullmatch(value)) or redact(value) != value


def safe_echo(text: str) -> str:
    """`text` (an error's field or reason) with each quoted client value that is long, key-shaped or a
    secret shape of auth.redact replaced by its length; a bare field name (from the query) likewise. The
    server's own words are kept ("send Authorization: Bearer KEY" is advice, not a secret)."""
    if _withheld(text) and not any(c.isspace() for c in text):
        return f"<{len(text)} characters>"
    return _QUOTED.sub(
        lambda m: f"<{len(v)} characters>" if _withheld(v := m.group(1) or m.group(2) or "") else m.group(0),
        text,
    )


def safe_detail(problem: Problem) -> str:
    """The problem's `field: reason`, each part through safe_echo."""
    return f"{safe_echo(problem.field)}: {safe_echo(problem.reason)}"


def problem_response(problem: Problem) -> web.Response:
    field, reason = safe_echo(problem.field), safe_echo(problem.reason)
    body = {
        "type": f"urn:oglogstream:problem:{problem.kind}",
        "title": problem.title,
        "status": problem.status,
        "detail": safe_detail(problem),
        "field": field,
        "reason": reason,
        "error": problem.title,
        "details": [{k: safe_echo(v) for k, v in d.items()} for d in problem.details],
        **problem.extra,
    }
    return web.Response(
        status=problem.status, body=row_codec.dumps(body), content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def to_problem(exc: BaseException) -> Problem | None:
    """The Problem a domain error stands for, or None for an unexpected exception."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, BrokerUnavailable):
        detail = f"broker unavailable: {exc}"
        if exc.maybe_stored:  # the truth: a resend without the same batch id may store the batch twice
            detail += (
                f"; the request may have been stored: resend it with the same {BATCH_ID_HEADER}"
                " to have it stored once"
            )
        return Problem(
            503, "broker unavailable", "broker", detail,
            headers={"Retry-After": str(BROKER_RETRY_AFTER_SECONDS)}, kind="broker_unavailable",
        )
    if isinstance(exc, web.HTTPException) and exc.status >= 400:  # aiohttp's own: 404, 405, ...
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return Problem(exc.status, exc.reason.lower(), "request", exc.reason, headers=headers or None)
    return None


def _internal(request: web.Request, exc: BaseException) -> Problem:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
    log.error("%s %s: unexpected %s%s: %s", request.method, request.path, type(exc).__name__, where, exc)
    return Problem(500, "internal server error", "server", "unexpected error; the server log has the cause")


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turns Problems and domain errors into problem+json, anything else into a 500 that leaks nothing; closes
    the connection of an error answered before its body was read through (so it is neither drained nor
    inflated)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        problem = to_problem(exc)
        if problem is None:  # redirects and other non-errors pass through
            raise
        response = problem_response(problem)
    except Exception as exc:
        response = problem_response(to_problem(exc) or _internal(request, exc))
    if response.status >= 400 and not request.content.is_eof():
        # Refused before its body was read through: send the answer, then close at once. Otherwise aiohttp
        # would keep reading (lingering) the remainder for up to 10 s after the answer.
        response.force_close()
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:  # the client is gone mid-body: no one reads this answer; not a server error
            log.debug("%s %s: client gone before its %d", request.method, request.path, response.status)
        if request.protocol is not None:
            request.protocol.force_close()
    return response


def check_media(request: web.Request, allowed: tuple[str, ...]) -> None:
    """415 unless the Content-Type is one of `allowed` and the Content-Encoding is gzip or identity."""
    if request.content_type not in allowed:
        got = request.headers.get("Content-Type", "(none)")
        raise Problem(
            415, "unsupported media type", "Content-Type", f"expected {' or '.join(allowed)}, got {got}"
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", *_GZIP):
        raise Problem(
            415, "unsupported media type", "Content-Encoding", f"expected gzip or identity, got {encoding}"
        )


class _Gunzip:
    """Incremental gzip inflater with an output cap; concatenated members are one stream (RFC 1952)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.out: list[bytes] = []
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._member_started = False

    async def feed(self, data: bytes) -> None:
        """Inflate `data`, yielding to the event loop after every _INFLATE_STEP bytes of output (64 KiB of
        a gzip bomb inflates to 64 MiB: in one call that would hold the loop for tens of ms)."""
        try:
            while data:
                if self._inflater.eof:  # the previous member ended: the next starts here
                    self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._member_started = True
                pending = data
                while not self._inflater.eof:
                    step = min(_INFLATE_STEP, self.limit + 1 - self.size)
                    chunk = self._inflater.decompress(pending, step)
                    self.size += len(chunk)
                    if self.size > self.limit:
                        raise too_large(self.limit, "decompressed body (after gunzip)", "bytes")
                    self.out.append(chunk)
                    pending = self._inflater.unconsumed_tail
                    if len(chunk) < step and not pending:
                        break  # all input used and no output held back: wait for more input
                    if len(chunk) == step:  # output was capped: zlib may hold more even with no input left
                        await asyncio.sleep(0)
                data = self._inflater.unused_data if self._inflater.eof else b""
        except zlib.error as exc:  # bad header, bad deflate data, or a CRC32/length trailer mismatch
            raise Problem(400, "bad request", "body", f"invalid gzip data: {exc}") from None

    def finish(self) -> bytes:
        if not self._member_started:
            raise Problem(400, "bad request", "body", "invalid gzip data: empty body")
        if not self._inflater.eof:
            raise Problem(
                400, "bad request", "body", "invalid gzip data: truncated (stream or trailer missing)"
            )
        return b"".join(self.out)


async def _read_chunk(request: web.Request, started: float, size: int) -> bytes:
    """The next chunk of the body (b"" at its end), or 408 when it does not come within BODY_IDLE_TIMEOUT or
    the rate floor's deadline for the `size` bytes received since `started` (loop time)."""
    loop = asyncio.get_running_loop()
    floor_deadline = started + BODY_TIMEOUT + size / MIN_BODY_RATE - loop.time()
    wait = max(min(BODY_IDLE_TIMEOUT, floor_deadline), 0)
    try:
        return await asyncio.wait_for(request.content.read(_READ_CHUNK), wait)
    except asyncio.TimeoutError:
        why = (
            f"no byte for {BODY_IDLE_TIMEOUT:g} s" if wait == BODY_IDLE_TIMEOUT
            else f"slower than {MIN_BODY_RATE} bytes/s after a grace of {BODY_TIMEOUT:g} s"
        )
        raise Problem(
            408, "request timeout", "body",
            f"body not received in time: {why} ({size} bytes after {loop.time() - started:.0f} s)",
        ) from None
    except (RequestPayloadError, HttpProcessingError, ConnectionError) as exc:
        # ConnectionError: the client went away mid-body (no one reads this answer; it is not a 500).
        raise Problem(400, "bad request", "body", f"incomplete body: {exc}") from None


def _sent_name(request: web.Request) -> str:
    """The body on the wire, named so a client knows which of the two limits (sent, inflated) it hit."""
    gzipped = request.headers.get("Content-Encoding", "").strip().lower() in _GZIP
    return "body as sent (gzip-compressed)" if gzipped else "body"


async def body_started(request: web.Request, *, limit: int) -> None:
    """Wait until the body's first SLOT_HEAD_BYTES (or all of a smaller body) arrived, holding nothing: call
    it before taking a limited in-flight slot, so a client must send that much before it holds one (a
    connection that sends a byte and stalls holds none; most batches are read whole before their slot).
    413 at once for a declared Content-Length over `limit` (bytes, as read_body's); 408 as in read_body
    (BODY_IDLE_TIMEOUT, MIN_BODY_RATE); what arrived is kept for read_body."""
    if _FIRST_CHUNK in request:
        return
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, _sent_name(request), "bytes")
    started = asyncio.get_running_loop().time()
    head = b""
    while len(head) < SLOT_HEAD_BYTES:
        chunk = await _read_chunk(request, started, len(head))
        if not chunk:
            break
        head += chunk
    request[_FIRST_CHUNK], request[_BODY_STARTED_AT] = head, started


async def read_body(request: web.Request, *, limit: int, decompressed_limit: int) -> bytes:
    """The request body (gzip inflated and verified), bounded before the work is done.

    413 when the body exceeds `limit` bytes or, inflated, `decompressed_limit` (reading stops there); 400 for
    a body shorter than its Content-Length or bad/truncated gzip; 408 when it does not arrive in time (see
    BODY_IDLE_TIMEOUT, BODY_TIMEOUT, MIN_BODY_RATE)."""
    gzipped = request.headers.get("Content-Encoding", "").strip().lower() in _GZIP
    sent = _sent_name(request)
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit, sent, "bytes")
    inflater = _Gunzip(decompressed_limit) if gzipped else None
    chunks: list[bytes] = []
    size = 0
    first: bytes | None = request.pop(_FIRST_CHUNK, None)
    started = request.pop(_BODY_STARTED_AT, None) or asyncio.get_running_loop().time()
    while True:
        if first is not None:
            chunk, first = first, None
        else:
            chunk = await _read_chunk(request, started, size)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise too_large(limit, sent, "bytes")
        if inflater is None:
            chunks.append(chunk)
        else:
            await inflater.feed(chunk)
    if length is not None and size < length:
        raise Problem(400, "bad request", "body", "shorter than its Content-Length")
    return b"".join(chunks) if inflater is None else inflater.finish()
