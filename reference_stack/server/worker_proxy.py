"""What an ingest worker does with a request that is not ingestion: pass it to the supervisor.

`oglog stack up --ingest-workers N` (workers.py) puts N ingest-only processes on the public port. The kernel
(SO_REUSEPORT) hands each new connection to one of them, so any of them may receive a query, a live-tail
WebSocket, the dashboard, /health or /metrics. Those belong to the supervisor process (chDB admits one process
per store), which listens on a Unix socket under the data dir. `install(app, socket_path)` adds an outermost
middleware to the worker's `create_app` app: the ingestion paths (INGEST_PATHS) are served in the worker,
everything else is streamed to the supervisor unchanged (method, path and query, headers but hop-by-hop ones,
body, status, response headers and body; a WebSocket is relayed frame by frame), with the client's address in
X-Forwarded-For. Authentication and rate limits of proxied routes are therefore the supervisor's. GET
/metrics is answered by the worker: its own registry and every other process's, labelled (worker_metrics).

Errors: the supervisor unreachable -> 502 problem+json (`{"error", "details": [{"field", "reason"}]}`);
a WebSocket the supervisor refuses -> the supervisor's own answer (status and body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from ..http.boundary import Problem, problem_response
from ..http.metrics import CONTENT_TYPE_LATEST
from ..query import live
from ..query.live_client import DEAD_TICKS, limit_send_buffer
from . import worker_metrics

__all__ = ["INGEST_PATHS", "PROXY_CONNECT_TIMEOUT", "install"]

log = logging.getLogger(__name__)

#: Paths an ingest worker answers itself (every method: a wrong one gets the worker's own 405).
INGEST_PATHS = frozenset({"/log", "/logs", "/v1/logs"})
#: How long a worker waits to connect to the supervisor's socket before answering 502.
PROXY_CONNECT_TIMEOUT = 5.0
#: Frames relayed in one direction of a proxied WebSocket are capped like the live tail's own (64 KiB).
_WS_MAX_MSG = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("oglog_proxy_session", aiohttp.ClientSession)
_SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "oglog_proxy_ws", weakref.WeakSet[web.WebSocketResponse]
)
_PLACE: web.AppKey[tuple[Path, int, int]] = web.AppKey("oglog_proxy_place", tuple)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install(app: web.Application, socket_path: Path, *, index: int = 0, workers: int = 1) -> None:
    """Make `app` (an ingest-only `create_app` app, not started) relay non-ingest paths to `socket_path`;
    it is worker `index` of `workers` (GET /metrics gathers them all, see worker_metrics)."""

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.UnixConnector(path=str(socket_path), limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=PROXY_CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            app[_SESSION] = session
            yield

    async def close_sockets(app: web.Application) -> None:
        # A relayed live tail would hold the worker's shutdown for the whole shutdown timeout.
        sockets: weakref.WeakSet[web.WebSocketResponse] = app[_SOCKETS]
        for ws in list(sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server shutting down")

    app[_SOCKETS] = weakref.WeakSet()
    app[_PLACE] = (socket_path, index, workers)
    app.cleanup_ctx.append(session_ctx)
    app.on_shutdown.append(close_sockets)
    app.middlewares.insert(0, _proxy_middleware)


@web.middleware
async def _proxy_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    internal = isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str)
    if request.path in INGEST_PATHS or internal:  # internal: another worker gathering /metrics
        return await handler(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["Host"] = request.host  # the supervisor checks it as if the client had connected to it
    if request.path == "/metrics" and request.method == "GET":
        return await _gather_metrics(request, handler, headers)
    session = request.app[_SESSION]
    forwarded = request.headers.get("X-Forwarded-For")
    client = request.remote or ""
    headers["X-Forwarded-For"] = f"{forwarded}, {client}" if forwarded else client
    url = f"http://oglog-supervisor{request.rel_url}"
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _relay_websocket(request, session, url, headers)
        return await _relay_http(request, session, url, headers)
    except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
        log.error("ingest worker: supervisor unreachable for %s %s: %s", request.method, request.path, exc)
        return problem_response(
            Problem(502, "supervisor unreachable", "path", f"{type(exc).__name__}: {exc}", kind="unavailable")
        )


async def _gather_metrics(
    request: web.Request, handler: _Handler, headers: dict[str, str]
) -> web.StreamResponse:
    own = await handler(request)  # through this worker's own middlewares (access control) first
    if own.status != 200 or not isinstance(own, web.Response) or not isinstance(own.body, bytes):
        return own
    socket_path, index, workers = request.app[_PLACE]
    headers.pop("Accept-Encoding", None)
    body = await worker_metrics.gather(
        socket_path, workers, own_index=index, own=own.body.decode(), headers=headers
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _relay_http(
    request: web.Request, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> web.StreamResponse:
    body = request.content if request.body_exists else None
    async with session.request(
        request.method, url, headers=headers, data=body, allow_redirects=False
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                response.headers.add(key, value)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            # The CLIENT went away mid-answer (aiohttp's ClientConnectionResetError, "Cannot write to closing
            # transport"): the supervisor is fine, so this is not the "supervisor unreachable" error below.
            log.debug("ingest worker: client left during %s %s", request.method, request.path)
        return response


async def _relay_websocket(
    request: web.Request, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> web.StreamResponse:
    for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
        headers.pop(name, None)  # ws_connect makes its own handshake with the supervisor
    # Browsers send their key as a subprotocol (auth/middleware.py): offer the same list upstream and select
    # back what the supervisor selected, or the browser fails the handshake.
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
    try:
        upstream = await session.ws_connect(
            url, headers=headers, protocols=protocols, max_msg_size=_WS_MAX_MSG, autoping=False
        )
    except aiohttp.WSServerHandshakeError:
        # Refused before the upgrade (bad filters, auth): the same GET without the upgrade gets the
        # supervisor's answer with its body, which ws_connect does not keep.
        return await _relay_http(request, session, url, headers)
    async with upstream:
        selected = (upstream.protocol,) if upstream.protocol else ()
        # Pings and pongs are relayed, not answered here: the live tail's liveness (query/live_client.py) is
        # the pongs of the client itself; answered by the relay, a vanished client would never be noticed.
        ws = web.WebSocketResponse(max_msg_size=_WS_MAX_MSG, autoping=False, protocols=selected)
        limit_send_buffer(request)  # a client that stops reading must not swallow MBs, one send() each
        await ws.prepare(request)
        request.app[_SOCKETS].add(ws)
        down = asyncio.create_task(_pump(upstream, ws))
        heard = _Heard()
        up = asyncio.create_task(_pump(ws, upstream, heard))
        cut = False
        try:
            cut = await _until_done_or_silent(down, up, heard)
            if cut:
                log.info("ingest worker: a relayed WebSocket client answered nothing for %d heartbeats; "
                         "cutting it", DEAD_TICKS + 1)
        finally:
            for task in (down, up):
                task.cancel()
            results = await asyncio.gather(down, up, return_exceptions=True)
            # The supervisor's close code and reason reach the client unchanged: a live tail closed with 1013
            # "entries may be missing" must say so through a worker as well.
            code = upstream.close_code or aiohttp.WSCloseCode.OK
            reason = results[0] if isinstance(results[0], str) else ""
            if cut or code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
                # A silent client, or the supervisor's side cut (a client that answered no ping, a crash):
                # cut this one too, as 1006 may not travel in a close frame.
                if request.transport is not None:
                    request.transport.abort()
            else:
                await ws.close(code=code, message=reason.encode())
            await upstream.close()
        return ws


class _Heard:
    """Frames relayed from the client (its pongs included)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def _until_done_or_silent(down: asyncio.Task[str], up: asyncio.Task[str], heard: _Heard) -> bool:
    """Wait until a pump ends (False), or the client sent nothing for DEAD_TICKS + 1 of the live tail's
    heartbeat ticks (True): the supervisor cut its side a tick earlier, but this relay may be stuck sending
    to a vanished client and so never read that cut."""
    seen, silent = -1, 0
    while True:
        done, _ = await asyncio.wait({down, up}, timeout=live.HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
        if done:
            return False
        if heard.count != seen:
            seen, silent = heard.count, 0
            continue
        silent += 1
        if silent > DEAD_TICKS:
            return True


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse[bool],
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse[bool],
    heard: _Heard | None = None,
) -> str:
    """Relay data, ping and pong frames until `source` ends, counting them in `heard`; the reason of its
    close frame ("" if none)."""
    while True:
        msg = await source.receive()
        if heard is not None:
            heard.count += 1
        if msg.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == aiohttp.WSMsgType.PING:
            await sink.ping(msg.data)
        elif msg.type == aiohttp.WSMsgType.PONG:
            await sink.pong(msg.data)
        else:  # CLOSE (reason in extra), CLOSING, CLOSED, ERROR
            return msg.extra if msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.extra, str) else ""
