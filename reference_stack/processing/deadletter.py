"""Dead letters: what the processor can never store, kept with why in the DEAD_STREAM_NAME JetStream stream.

A dead letter is a message on DEAD_LETTER_SUBJECT: the payload is the refused rows (a JSON array as ingestion
wrote them) or, for a malformed message, the original bytes; headers carry the original `Oglog-*` headers (the
row format among them) plus `Oglog-Dead-Reason`, `Oglog-Error`, `Oglog-Original-Seq` and
`Oglog-Original-Msg-Id` (messages.py names them all).

Routes (query role; issue 12 will put them behind the `admin` scope):
  GET  /api/dead-letters?after=SEQ&limit=N
       -> 200 {"dead_letters": [...], "next_after": SEQ|null, "total": N}
       A page holds up to N dead letters and stops early once their payloads reach PAGE_BYTES (next_after then
       names where to go on); a payload that alone exceeds PAGE_BYTES is shown as the text of its first
       PREVIEW_BYTES, with `truncated: true` and its size in `bytes`. Payloads are parsed off the event loop.
  POST /api/dead-letters/replay {"seqs": [SEQ, ...]} or {"all": true}
       -> 200 {"replayed": [SEQ, ...], "failed": [{"seq": SEQ, "error": "..."}]}
  POST /api/dead-letters/discard {"seqs": [SEQ, ...]}
       -> 200 {"discarded": [SEQ, ...], "failed": [{"seq": SEQ, "error": "..."}]}
  DELETE /api/dead-letters/{seq}
       -> 200 {"discarded": [SEQ], "failed": []}; 404 when there is no such dead letter
Replay re-publishes each one to STREAM_SUBJECT (Nats-Msg-Id `replay-<dead seq>`, so a replay repeated within
the duplicate window counts once) and then deletes it; the processor's id check keeps rows stored once. A
replayed message keeps its `Oglog-Original-Msg-Id`, so if it is refused again its new dead letter still names
the message ingestion first wrote. Discard deletes dead letters for good (with auth on, both need `admin`).
Request bodies go through the shared body reader (MAX_REQUEST_BYTES, timeouts) and a JSON parser with a
nesting limit: a deep or malformed body is a 400, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import nats.errors
import nats.js.errors
import pydantic_core
from aiohttp import web

from ..broker import messages
from ..broker.broker import Broker, BrokerUnavailable
from ..config import DEAD_LETTER_SUBJECT, DEAD_STREAM_NAME
from ..http.boundary import Problem, read_body
from ..http.metrics import Metrics
from ..http.resources import BROKER, METRICS
from ..query.filters import ParamError, check_known
from .deadletter_view import (
    INLINE_PARSE_BYTES,
    PAGE_BYTES,
    PREVIEW_BYTES,
    describe,
    headers_text,
    item_bytes,
    message_view,
)

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "MAX_REPLAY",
    "MAX_REQUEST_BYTES",
    "PAGE_BYTES",
    "PREVIEW_BYTES",
    "count_dead_letters",
    "discard_dead_letters",
    "list_dead_letters",
    "publish_dead_letter",
    "replay_dead_letters",
    "setup",
]

DEFAULT_PAGE = 50
MAX_PAGE = 500
#: The query parameters GET /api/dead-letters reads (others are a 400, as on every route).
LIST_PARAMS = ("after", "limit")
#: Dead letters one replay request re-publishes (`{"all": true}` takes the oldest this many; repeat it).
MAX_REPLAY = 1000
#: Bytes a replay/discard request body may have: MAX_REPLAY sequence numbers of 19 digits fit in ~21 KB.
MAX_REQUEST_BYTES = 64 * 1024
_ERROR_CHARS = 1000


async def publish_dead_letter(
    broker: Broker,
    *,
    seq: int,
    headers: Mapping[str, str],
    payload: bytes,
    rows: int | None,
    reason: str,
    error: str,
) -> None:
    """Make message `seq` (its `headers`; `payload`: all or the refused part of it) durable as a dead letter.

    `rows`: how many rows `payload` holds (None for a malformed message). Raises BrokerUnavailable."""
    # Every Oglog-* header is kept, the row format among them: a replay is read as the format it has.
    out = messages.oglog_headers(headers)
    out.update(
        {
            messages.MSG_ID: f"dead-{seq}",
            messages.DEAD_REASON: reason,
            messages.DEAD_ERROR: error.replace("\r", " ").replace("\n", " ")[:_ERROR_CHARS],
            messages.ORIGINAL_SEQ: str(seq),
            # A replayed message carries the id of the first one; otherwise its own id is the original.
            messages.ORIGINAL_MSG_ID: (
                headers.get(messages.ORIGINAL_MSG_ID) or headers.get(messages.MSG_ID, "")
            ),
        }
    )
    if rows is not None:
        out[messages.ROWS] = str(rows)
    await broker.publish(DEAD_LETTER_SUBJECT, payload, out)


async def count_dead_letters(broker: Broker) -> int:
    """Messages in the dead-letter stream now. Raises BrokerUnavailable."""
    return int((await _stream_state(broker)).messages)


async def _stream_state(broker: Broker) -> Any:
    """The dead-letter stream's state now (messages, last_seq, ...). Raises BrokerUnavailable."""
    try:
        info = await broker.js.stream_info(DEAD_STREAM_NAME)
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        raise BrokerUnavailable(f"dead-letter stream: {type(exc).__name__}: {exc}") from exc
    return info.state


async def _next(broker: Broker, after: int) -> Any | None:
    try:
        return await broker.js.get_msg(
            DEAD_STREAM_NAME, seq=after + 1, subject=DEAD_LETTER_SUBJECT, next=True
        )
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        raise BrokerUnavailable(f"dead-letter stream: {type(exc).__name__}: {exc}") from exc


async def list_dead_letters(
    broker: Broker, *, after: int = 0, limit: int = DEFAULT_PAGE
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `limit` dead letters with a sequence > `after`, oldest first, stopping before the one whose
    message would take the page's messages past PAGE_BYTES (the first one is always listed), and the `after`
    of the next page (None when this was the last). Each: seq, time (ISO UTC), reason, error, original_seq,
    original_msg_id, rows (None for malformed), bytes (payload size), truncated (bool), message (the payload
    as JSON, NaN/Infinity as their text; or as text when it is not JSON the answer can carry; see
    deadletter_view.message_view). Raises BrokerUnavailable."""
    if not broker.is_connected:
        raise BrokerUnavailable(f"NATS is {broker.status.lower()}")
    out: list[dict[str, Any]] = []
    used = 0
    while len(out) < limit:
        msg = await _next(broker, after)
        if msg is None:
            return out, None
        data: bytes = msg.data or b""
        if out and used + len(data) > PAGE_BYTES:
            # Checked on the raw size before any parse: the page may stop early (a payload full of spaces
            # shrinks when spelled), never late for a large payload.
            return out, after
        if len(data) <= INLINE_PARSE_BYTES:
            message, size, truncated = message_view(data)
        else:  # a large payload's parse would stall every other client of this process
            message, size, truncated = await asyncio.to_thread(message_view, data)
        item = describe(msg, message, truncated)
        size = item_bytes(item, size)  # headers count too: up to 64 KiB each in NATS
        if out and used + size > PAGE_BYTES:
            return out, after
        out.append(item)
        used += size
        after = msg.seq
    return out, (after if await _next(broker, after) is not None else None)


async def replay_dead_letters(
    broker: Broker, seqs: list[int] | None, *, limit: int = MAX_REPLAY
) -> tuple[list[int], list[dict[str, Any]]]:
    """Re-publish the dead letters `seqs` (None: the oldest `limit`) to the logs stream, deleting each once
    the broker acked its copy. Returns (replayed seqs, [{"seq", "error"}] for those not replayed).
    Raises BrokerUnavailable when NATS is down before anything was replayed."""
    if not broker.is_connected:
        raise BrokerUnavailable(f"NATS is {broker.status.lower()}")
    replayed: list[int] = []
    failed: list[dict[str, Any]] = []
    if seqs is None:  # the oldest `limit`, each fetched once and never parsed: a payload is only carried
        # Only those there now: a replay refused again comes back as a newer dead letter, not replayed twice.
        last, after = int((await _stream_state(broker)).last_seq), 0
        for _ in range(limit):
            msg = await _next(broker, after)
            if msg is None or msg.seq > last:
                break
            after = msg.seq
            await _replay_one(broker, msg, replayed, failed)
        return replayed, failed
    for seq in seqs:
        try:
            msg = await broker.js.get_msg(DEAD_STREAM_NAME, seq=seq)
        except nats.js.errors.NotFoundError:
            failed.append({"seq": seq, "error": "no such dead letter"})
            continue
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            failed.append({"seq": seq, "error": f"{type(exc).__name__}: {exc}"})
            continue
        await _replay_one(broker, msg, replayed, failed)
    return replayed, failed


async def _replay_one(broker: Broker, msg: Any, replayed: list[int], failed: list[dict[str, Any]]) -> None:
    """Re-publish dead letter `msg` (as fetched) and delete it; its seq goes to `replayed` or `failed`."""
    seq: int = msg.seq
    headers = messages.oglog_headers(headers_text(msg))
    for name in messages.DEAD_ONLY_HEADERS:
        headers.pop(name, None)
    headers[messages.MSG_ID] = f"replay-{seq}"
    try:
        await broker.publish(messages.STREAM_SUBJECT, msg.data or b"", headers)
        await broker.js.delete_msg(DEAD_STREAM_NAME, seq)
    except (BrokerUnavailable, nats.errors.Error, asyncio.TimeoutError) as exc:
        failed.append({"seq": seq, "error": f"{type(exc).__name__}: {exc}"})
        return
    replayed.append(seq)


async def discard_dead_letters(broker: Broker, seqs: list[int]) -> tuple[list[int], list[dict[str, Any]]]:
    """Delete the dead letters `seqs` for good. Returns (discarded seqs, [{"seq", "error"}] for the others,
    "no such dead letter" for a sequence that is not in the stream). Raises BrokerUnavailable when NATS is
    down before anything was discarded."""
    if not broker.is_connected:
        raise BrokerUnavailable(f"NATS is {broker.status.lower()}")
    discarded: list[int] = []
    failed: list[dict[str, Any]] = []
    for seq in seqs:
        try:
            await broker.js.delete_msg(DEAD_STREAM_NAME, seq)
        except nats.js.errors.NotFoundError:
            failed.append({"seq": seq, "error": "no such dead letter"})
        except nats.js.errors.APIError as exc:  # 10057 "no message found" on some server versions
            error = "no such dead letter" if exc.err_code == 10057 else f"{type(exc).__name__}: {exc}"
            failed.append({"seq": seq, "error": error})
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            failed.append({"seq": seq, "error": f"{type(exc).__name__}: {exc}"})
        else:
            discarded.append(seq)
    return discarded, failed


async def refresh_gauge(broker: Broker, metrics: Metrics) -> None:
    """Set oglog_dead_letters to the stream's count (left as it was when NATS cannot answer)."""
    with contextlib.suppress(BrokerUnavailable):
        metrics.dead_letters.set(await count_dead_letters(broker))


def _bad_request(field: str, reason: str) -> Problem:
    return Problem(400, "invalid request", field, reason)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise _bad_request(name, f"expected an integer in {lo}..{hi}, got {raw[:40]!r}")
    return int(raw)


async def list_route(request: web.Request) -> web.Response:
    """GET /api/dead-letters: one page, oldest first; 400 naming a bad parameter; 503 while NATS is down."""
    try:
        check_known(request.query, LIST_PARAMS)
    except ParamError as exc:
        raise _bad_request(exc.field, exc.reason) from None
    after = _int_param(request, "after", 0, 0, 2**63 - 1)
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    broker = request.app[BROKER]
    # BrokerUnavailable becomes a 503 + Retry-After at the HTTP boundary.
    items, next_after = await list_dead_letters(broker, after=after, limit=limit)
    total = await count_dead_letters(broker)
    request.app[METRICS].dead_letters.set(total)
    # Encoded off the event loop too: a page is up to PAGE_BYTES of messages.
    body = await asyncio.to_thread(
        json.dumps, {"dead_letters": items, "next_after": next_after, "total": total}
    )
    return web.json_response(text=body)


async def _selection(request: web.Request, *, allow_all: bool) -> list[int] | None:
    """The dead letters a request body names: `{"seqs": [...]}` (1..MAX_REPLAY positive integers) or, when
    `allow_all`, `{"all": true}` (None). 400 naming the field for anything else, 413/408 from read_body."""
    data = await read_body(request, limit=MAX_REQUEST_BYTES, decompressed_limit=MAX_REQUEST_BYTES)
    shape = '{"seqs": [SEQ, ...]} or {"all": true}' if allow_all else '{"seqs": [SEQ, ...]}'
    try:  # pydantic_core's parser stops at a nesting limit (ValueError) where json.loads recursed into a 500
        body = pydantic_core.from_json(data or b"null")
    except ValueError as exc:
        raise _bad_request("body", f"expected {shape}: {str(exc)[:200]}") from None
    if allow_all and isinstance(body, dict) and body.get("all") is True and "seqs" not in body:
        return None
    if isinstance(body, dict) and isinstance(body.get("seqs"), list) and "all" not in body:
        seqs: list[Any] = body["seqs"]
        if not 1 <= len(seqs) <= MAX_REPLAY or not all(type(s) is int and 1 <= s < 2**63 for s in seqs):
            raise _bad_request("seqs", f"expected 1..{MAX_REPLAY} positive integer sequence numbers")
        return seqs
    raise _bad_request("body", f"expected {shape}")


async def replay_route(request: web.Request) -> web.Response:
    """POST /api/dead-letters/replay: `{"seqs": [...]}` (at most MAX_REPLAY) or `{"all": true}`."""
    seqs = await _selection(request, allow_all=True)
    broker = request.app[BROKER]
    replayed, failed = await replay_dead_letters(broker, seqs)
    await refresh_gauge(broker, request.app[METRICS])
    return web.json_response({"replayed": replayed, "failed": failed})


async def discard_route(request: web.Request) -> web.Response:
    """POST /api/dead-letters/discard: `{"seqs": [...]}` (at most MAX_REPLAY), deleted for good."""
    seqs = await _selection(request, allow_all=False)
    assert seqs is not None  # allow_all=False
    broker = request.app[BROKER]
    discarded, failed = await discard_dead_letters(broker, seqs)
    await refresh_gauge(broker, request.app[METRICS])
    return web.json_response({"discarded": discarded, "failed": failed})


async def delete_route(request: web.Request) -> web.Response:
    """DELETE /api/dead-letters/{seq}: 200 once deleted, 404 when there is no such dead letter."""
    raw = request.match_info["seq"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 1 <= int(raw) < 2**63:
        raise _bad_request("seq", f"expected a positive integer sequence number, got {raw[:40]!r}")
    broker = request.app[BROKER]
    discarded, failed = await discard_dead_letters(broker, [int(raw)])
    await refresh_gauge(broker, request.app[METRICS])
    if failed and failed[0]["error"] == "no such dead letter":
        raise Problem(404, "not found", "seq", f"no dead letter with sequence {raw}")
    if failed:
        raise BrokerUnavailable(failed[0]["error"])
    return web.json_response({"discarded": discarded, "failed": failed})


def setup(app: web.Application) -> None:
    """Register the dead-letter routes (needs the broker_ctx)."""
    app.router.add_get("/api/dead-letters", list_route)
    app.router.add_post("/api/dead-letters/replay", replay_route)
    app.router.add_post("/api/dead-letters/discard", discard_route)
    app.router.add_delete("/api/dead-letters/{seq}", delete_route)
