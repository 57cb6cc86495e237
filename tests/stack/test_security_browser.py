"""Browser-facing checks on a real stack, with auth off (loopback default) and on: a DNS-rebinding Host is
refused, /ws/live refuses a hostile Origin, CORS answers only configured origins and never with `*`."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.config import StackConfig

from .auth_helpers import auth_stack
from .query_helpers import running

pytestmark = pytest.mark.timeout(120)

TRUSTED = "https://logs.example.com"


@pytest.fixture
async def base(nats_server: Any, chdb_dsn: str) -> AsyncIterator[str]:
    """Every role with the defaults (loopback, auth off) plus one configured origin and host name."""
    config = StackConfig(
        nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, allowed_origins=(TRUSTED,),
        allowed_hosts=("logs.example.com",),
    )
    async with running(config) as (url, _):
        yield url


async def status_of(session: aiohttp.ClientSession, url: str, **headers: str) -> int:
    async with session.get(url, headers=headers) as resp:
        return resp.status


async def test_rebinding_host_is_refused(base: str) -> None:
    """A page on evil.example rebinding its name to 127.0.0.1 sends Host: evil.example: 403 on the API,
    the live tail and the dashboard; loopback names and configured names pass; /health stays open."""
    port = base.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as session:
        for path in ("/api/stats", "/ws/live", "/", "/metrics"):
            assert await status_of(session, base + path, Host=f"evil.example:{port}") == 403, path
        async with session.get(base + "/api/logs", headers={"Host": "evil.example"}) as resp:
            problem = await resp.json(content_type=None)
        assert problem["field"] == "Host" and problem["type"] == "urn:oglogstream:problem:host_not_allowed"
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "logs.example.com"):
            assert await status_of(session, base + "/api/stats", Host=host) == 200, host
        assert await status_of(session, base + "/health", Host="evil.example") == 200


async def test_live_tail_refuses_a_hostile_origin(base: str) -> None:
    """/ws/live from another site's page (browsers send its Origin; CORS does not apply to WebSockets): 403
    before the upgrade, as for `null` (sandboxed frames); same origin and configured origins connect."""
    host = base.removeprefix("http://")
    async with aiohttp.ClientSession() as session:
        for origin in ("http://evil.example", "null", f"http://{host}.evil.example"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + "/ws/live", origin=origin)
            assert refused.value.status == 403, origin
        for origin in (f"http://{host}", TRUSTED):
            async with session.ws_connect(base + "/ws/live", origin=origin) as ws:
                assert not ws.closed


async def test_cors_only_for_configured_origins(base: str) -> None:
    """A configured origin gets its own name back (never `*`) and a preflight answer; another origin's
    cross-site POST is refused before it does anything."""
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/api/stats", headers={"Origin": TRUSTED}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == TRUSTED and resp.headers["Vary"] == "Origin"
        preflight = {"Origin": TRUSTED, "Access-Control-Request-Method": "GET"}
        async with session.options(base + "/api/logs", headers=preflight) as resp:
            assert resp.status == 204 and "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        entry = {"level": "info", "message": "csrf", "service": "csrf"}
        async with session.post(base + "/log", json=entry, headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


async def test_checks_hold_with_auth_on(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> None:
    """With auth on, a valid query key does not lift the Host and Origin checks."""
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as stack, aiohttp.ClientSession() as session:
        key = stack.headers("query")
        assert await status_of(session, stack.base + "/api/stats", Host="evil.example", **key) == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(stack.base + "/ws/live", origin="http://evil.example", headers=key)
        assert refused.value.status == 403


def test_origin_and_host_settings_are_validated() -> None:
    """`*`, paths and junk are refused as origins (never a wildcard), `*` as a host name."""
    for origin in ("*", "https://x.example/path", "x.example", "ftp://x.example"):
        with pytest.raises(ValueError, match="allowed_origins"):
            StackConfig(allowed_origins=(origin,))
    with pytest.raises(ValueError, match="allowed_hosts"):
        StackConfig(allowed_hosts=("*",))
    with pytest.raises(ValueError, match="insecure"):
        StackConfig(require_auth=True, insecure=True)


@pytest.mark.parametrize("names", [(), ("logs.internal",)])
async def test_wildcard_bind_with_auth_off_still_checks_host(
    nats_server: Any, chdb_dsn: str, names: tuple[str, ...]
) -> None:
    """`--host 0.0.0.0 --insecure` (auth off), with or without names: a rebinding Host gets 403 on the API and
    the live tail (no 101 with Origin evil.example); loopback names, configured names and the machine's name
    pass."""
    config = StackConfig(
        nats_url=nats_server.url, clickhouse_dsn=chdb_dsn, host="0.0.0.0", insecure=True, allowed_hosts=names
    )
    async with running(config) as (base, _), aiohttp.ClientSession() as session:
        port = base.rsplit(":", 1)[1]
        evil = f"evil.example:{port}"
        assert await status_of(session, base + "/api/stats", Host=evil) == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                base + "/ws/live", headers={"Host": evil}, origin=f"http://{evil}"
            )
        assert refused.value.status == 403
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", *names, socket.gethostname()):
            assert await status_of(session, base + "/api/stats", Host=host) == 200, host


async def test_refusals_carry_cors_headers_for_allowed_origins(
    nats_server: Any, chdb_dsn: str, tmp_path: Path
) -> None:
    """A page of an allowed origin can read its 401, 403 and 400 (and so Retry-After on a 429): they carry
    Access-Control-Allow-Origin; another origin's refusal does not."""
    async with (
        auth_stack(nats_server.url, chdb_dsn, tmp_path, allowed_origins=(TRUSTED,)) as stack,
        aiohttp.ClientSession() as session,
    ):
        for headers, expected in (
            ({}, 401),
            (stack.headers("ingest"), 403),
            (stack.headers("revoked-query"), 401),
        ):
            async with session.get(stack.base + "/api/stats", headers={**headers, "Origin": TRUSTED}) as resp:
                assert resp.status == expected
                assert resp.headers["Access-Control-Allow-Origin"] == TRUSTED
                assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]
        query = {**stack.headers("query"), "Origin": TRUSTED}
        async with session.get(stack.base + "/api/logs?level=loud", headers=query) as resp:
            assert resp.status == 400 and resp.headers["Access-Control-Allow-Origin"] == TRUSTED
        async with session.get(stack.base + "/api/stats", headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
