"""Real local servers that answer the hostile or odd way, for the CLI's hostile-server tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from tests.stack.helpers import running_app

__all__ = ["HEALTH", "Odd", "odd_server", "raw_server", "streaming_server"]

#: A healthy stack's /health document.
HEALTH = b'{"status":"ok","service":"ingest+process+query","nats_status":"CONNECTED","storage_status":"ok"}'


@dataclasses.dataclass(frozen=True)
class Odd:
    """One odd answer: given to every HTTP request (`status`, `body`, `headers`), and, when `ws` is set, sent
    as the one message of an accepted /ws/live WebSocket instead. `healthy`: /health answers a real health
    document (so `doctor` gets past its first check to the odd /api/logs and /log)."""

    name: str
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    ws: str | None = None
    healthy: bool = False


@contextlib.asynccontextmanager
async def odd_server(odd: Odd) -> AsyncIterator[str]:
    """A real aiohttp server answering `odd` on every path; yields its base URL."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if odd.healthy and request.path == "/health":
            return web.Response(body=HEALTH, content_type="application/json")
        if odd.ws is not None and request.path == "/ws/live":
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            await socket.send_str(odd.ws)
            with contextlib.suppress(asyncio.TimeoutError):
                await socket.receive(timeout=30)
            return socket
        headers = dict(odd.headers)
        if "Location" in headers:
            headers["Location"] = headers["Location"].replace("{path}", request.path)
        return web.Response(status=odd.status, body=odd.body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


@contextlib.asynccontextmanager
async def streaming_server(
    stream: Callable[[web.StreamResponse], Awaitable[None]], *, healthy: bool = False
) -> AsyncIterator[str]:
    """A real aiohttp server whose every answer is a 200 JSON body written by `stream(response)` (which may
    never end: it stops when the client goes away); `healthy` as for Odd."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if healthy and request.path == "/health":
            return web.Response(body=HEALTH, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await stream(response)
        return response

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


@contextlib.asynccontextmanager
async def raw_server(write: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A plain TCP server on 127.0.0.1 that reads nothing and lets `write(writer)` answer each connection
    (bytes that need not be HTTP at all); yields "http://127.0.0.1:PORT"."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await write(writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
