"""Every route x {no key, wrong scope, revoked key, right key} on a real stack (NATS, chDB) with auth on:
401 + WWW-Authenticate, 403, 401, success; /health stays open; keys work from headers, the WebSocket
subprotocol and the environment; revocation reaches a running server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.auth.keys import KeyFile, parse_scopes
from oglogstream.stack.auth.middleware import WS_KEY_PROTOCOL, WS_PROTOCOL
from oglogstream.stack.config import StackConfig

from .auth_helpers import AuthStack, auth_stack
from .helpers import wait_for
from .query_helpers import running

pytestmark = pytest.mark.timeout(120)

ENTRY = {"level": "info", "message": "auth test", "service": "auth-routes"}
OTLP = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "otlp auth"}}]}]}]}
#: route -> (method, scope it needs, JSON body or None, status when the right key is sent)
ROUTES: dict[str, tuple[str, str, Any, int]] = {
    "/log": ("POST", "ingest", ENTRY, 202),
    "/logs": ("POST", "ingest", [ENTRY], 202),
    "/v1/logs": ("POST", "ingest", OTLP, 200),
    "/api/logs": ("GET", "query", None, 200),
    "/api/stats": ("GET", "query", None, 200),
    "/api/histogram": ("GET", "query", None, 200),
    "/api/dead-letters": ("GET", "query", None, 200),
    "/metrics": ("GET", "query", None, 200),
    "/api/dead-letters/replay": ("POST", "admin", {"all": True}, 200),
    "/api/keys": ("GET", "admin", None, 200),
}
WRONG_SCOPE = {"ingest": "query", "query": "ingest", "admin": "query"}


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def call(session: aiohttp.ClientSession, stack: AuthStack, route: str, headers: dict[str, str]) -> Any:
    method, _, body, _ = ROUTES[route]
    data = None
    if body is not None:
        data = "\n".join(json.dumps(e) for e in body) if route == "/logs" else json.dumps(body)
        ctype = "application/x-ndjson" if route == "/logs" else "application/json"
        headers = {**headers, "Content-Type": ctype}
    async with session.request(method, stack.base + route, data=data, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_every_route_needs_a_key_with_its_scope(stack: AuthStack, route: str) -> None:
    """No key and a revoked key: 401 with a Bearer challenge and a problem body; another scope's key: 403;
    the right key: the route's success status."""
    _, scope, _, ok = ROUTES[route]
    async with aiohttp.ClientSession() as session:
        status, headers, body = await call(session, stack, route, {})
        assert status == 401 and headers["WWW-Authenticate"].startswith('Bearer realm="oglogstream"'), body
        answer = json.loads(body)
        if route == "/v1/logs":  # OTLP: a google.rpc.Status, UNAUTHENTICATED
            assert answer["code"] == 16 and "API key" in answer["message"]
        else:
            assert answer["status"] == 401 and answer["field"] == "Authorization"
        status, headers, body = await call(session, stack, route, stack.headers(f"revoked-{scope}"))
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"], body
        status, _, body = await call(session, stack, route, stack.headers(WRONG_SCOPE[scope]))
        answer = json.loads(body)
        assert status == 403 and (answer.get("field") == "scope" or answer.get("code") == 7), body
        status, _, body = await call(session, stack, route, stack.headers(scope))
        assert status == ok, body
        status, _, body = await call(session, stack, route, {"X-API-Key": stack.keys[scope]})
        assert status == ok, body


async def test_live_tail_needs_a_query_key(stack: AuthStack) -> None:
    """/ws/live: no key 401, revoked 401, ingest key 403 (before the upgrade); a query key in Authorization
    (programs) or in the subprotocol (browsers; the server selects oglog.v1, never the key) connects."""
    url = stack.base + "/ws/live"
    async with aiohttp.ClientSession() as session:
        for headers, expected in [
            ({}, 401),
            (stack.headers("revoked-query"), 401),
            (stack.headers("ingest"), 403),
        ]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers=headers)
            assert refused.value.status == expected
        async with session.ws_connect(url, headers=stack.headers("query")) as ws:
            assert not ws.closed
        protocols = (WS_PROTOCOL, WS_KEY_PROTOCOL + stack.keys["query"])
        async with session.ws_connect(url, protocols=protocols) as ws:
            assert ws.protocol == WS_PROTOCOL


async def test_open_routes_answer_without_a_key(stack: AuthStack) -> None:
    """/health (no data) and the dashboard's static page and assets need no key; /api/keys never shows
    secrets or hashes."""
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/", "/assets/app.js"):
            async with session.get(stack.base + path) as resp:
                assert resp.status == 200, path
        async with session.get(stack.base + "/api/keys", headers=stack.headers("admin")) as resp:
            listed = await resp.json()
    names = {k["name"] for k in listed["keys"]}
    assert names == {"ingest", "query", "admin"}
    text = json.dumps(listed)
    assert "sha256" not in text and not any(key in text for key in stack.keys.values())


async def test_revocation_and_new_keys_reach_a_running_server(stack: AuthStack) -> None:
    """`revoke` on the keys file is refused by the running server within a few seconds; a key created after
    the start is accepted the same way (no restart)."""
    new_key = stack.keys_file.create(parse_scopes("query"), "late")[1]

    async def status_with(key: str) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(stack.base + "/api/stats", headers={"Authorization": f"Bearer {key}"}) as resp,
        ):
            return resp.status

    await wait_for(lambda: _equals(status_with(new_key), 200), timeout=5)
    stack.keys_file.revoke("late")
    await wait_for(lambda: _equals(status_with(new_key), 401), timeout=5)
    assert await status_with(stack.keys["query"]) == 200


async def test_revocation_closes_open_live_sockets(stack: AuthStack) -> None:
    """A live-tail socket whose key is revoked, or whose key loses `query`, is closed by the server (1008,
    with the reason) within a few seconds; a socket of a key still valid stays open."""
    revoked = stack.keys_file.create(parse_scopes("query"), "tail-revoked")[1]
    demoted = stack.keys_file.create(parse_scopes("query"), "tail-demoted")[1]
    url = stack.base + "/ws/live"
    async with aiohttp.ClientSession() as session:
        await wait_for(lambda: _equals(_stats_status(session, stack, demoted), 200), timeout=5)
        async with (
            session.ws_connect(url, headers={"Authorization": f"Bearer {revoked}"}) as ws_revoked,
            session.ws_connect(url, headers={"Authorization": f"Bearer {demoted}"}) as ws_demoted,
            session.ws_connect(url, headers=stack.headers("query")) as ws_kept,
        ):
            stack.keys_file.revoke("tail-revoked")
            with stack.keys_file._locked() as records:
                only = frozenset({"ingest"})
                demote = [dataclasses.replace(r, scopes=only) if "demoted" in r.name else r for r in records]
                stack.keys_file._write(demote)
            expected = ((ws_revoked, "API key revoked"), (ws_demoted, "API key lacks the query scope"))
            for ws, reason in expected:
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                assert (msg.data, msg.extra) == (1008, reason)
            assert not ws_kept.closed
            with pytest.raises(asyncio.TimeoutError):
                await ws_kept.receive(timeout=2)


async def _stats_status(session: aiohttp.ClientSession, stack: AuthStack, key: str) -> int:
    async with session.get(stack.base + "/api/stats", headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status


async def _equals(awaitable: Any, expected: int) -> bool:
    return await awaitable == expected


async def test_keys_from_the_environment(nats_server: Any, chdb_dsn: str) -> None:
    """OGLOG_API_KEYS (per-role deployments) keys are accepted with their scopes, without a keys file."""
    ingest_key, query_key = "i" * 32, "q" * 32
    config = StackConfig.from_env(
        ("ingest", "query"),
        {
            "NATS_URL": nats_server.url,
            "CLICKHOUSE_DSN": chdb_dsn,
            "OGLOG_REQUIRE_AUTH": "true",
            "OGLOG_API_KEYS": f"ingest:{ingest_key},query:{query_key}",
        },
    )
    assert ingest_key not in repr(config)
    async with running(config) as (base, _), aiohttp.ClientSession() as session:
        async with session.post(base + "/log", json=ENTRY, headers={"X-API-Key": ingest_key}) as resp:
            assert resp.status == 202
        async with session.post(base + "/log", json=ENTRY, headers={"X-API-Key": query_key}) as resp:
            assert resp.status == 403
        async with session.get(base + "/api/stats", headers={"X-API-Key": query_key}) as resp:
            assert resp.status == 200


def test_auth_on_without_keys_refuses_to_start(tmp_path: Path) -> None:
    """Auth on (flag or a non-loopback address) with an empty keys file: a clear error naming the way out;
    --insecure starts without auth; loopback without the flag is off, as before."""
    from oglogstream.stack.auth import startup as auth

    keys = str(tmp_path / "keys.json")
    for config in (
        StackConfig(require_auth=True, keys_file=keys),
        StackConfig(host="0.0.0.0", keys_file=keys),
    ):
        with pytest.raises(auth.AuthConfigError, match=r"oglog keys create .*--insecure"):
            auth.require_keys(config)
    assert auth.require_keys(StackConfig(host="0.0.0.0", insecure=True)) == 0
    assert not StackConfig().auth_enabled and StackConfig(host="::").auth_enabled
    KeyFile(tmp_path / "keys.json").create(parse_scopes("ingest"))
    assert auth.require_keys(StackConfig(host="0.0.0.0", keys_file=keys)) == 1


def test_key_settings_are_validated_without_quoting_keys() -> None:
    """Malformed OGLOG_API_KEYS entries, short keys and unknown scopes are ValueErrors naming the setting,
    never echoing the key; booleans and rates from the environment are checked too."""
    from oglogstream.stack.auth.keys import parse_env_keys
    from oglogstream.stack.server import cli

    secretish = "tooshort-secret"
    for entries in (["ingest:" + secretish], ["root:" + "k" * 32], ["k" * 32]):
        with pytest.raises(ValueError) as error:
            parse_env_keys(entries)
        assert secretish not in str(error.value) and "k" * 32 not in str(error.value)
    with pytest.raises(ValueError, match="OGLOG_API_KEYS"):
        cli.config_from_env(["ingest"], {"OGLOG_API_KEYS": "ingest:" + secretish})
    with pytest.raises(ValueError, match="OGLOG_REQUIRE_AUTH"):
        cli.config_from_env(["ingest"], {"OGLOG_REQUIRE_AUTH": "maybe"})
    with pytest.raises(ValueError, match="OGLOG_RATE_LIMIT_CLIENT"):
        cli.config_from_env(["ingest"], {"OGLOG_RATE_LIMIT_CLIENT": "0"})
    assert parse_env_keys(["query+admin:" + "k" * 32]) == [(frozenset({"query", "admin"}), "k" * 32)]
    b64 = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA/+.~_-=="  # every character docs/security.md allows
    assert parse_env_keys(["ingest:" + b64]) == [(frozenset({"ingest"}), b64)]
    for bad in ("k" * 30 + " x", "k" * 30 + ",x", "k" * 30 + "\x7f"):
        with pytest.raises(ValueError, match=r"-\._~\+/="):
            parse_env_keys(["ingest:" + bad])


def test_stack_up_reads_the_access_variables(tmp_path: Path) -> None:
    """`oglog stack up` reads OGLOG_API_KEYS, OGLOG_INSECURE, OGLOG_REQUIRE_AUTH, OGLOG_KEYS_FILE and the
    allowed names, as its refusal message tells users to (flags add to them); without them it refuses a
    wildcard address with no key."""
    from oglogstream.stack.server import cli

    key = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA/+=="  # base64 characters, as docs/security.md allows
    data = ["--data-dir", str(tmp_path)]
    args = cli.build_parser().parse_args(["stack", "up", "--host", "0.0.0.0", *data])
    with pytest.raises(cli.ConfigError, match="OGLOG_API_KEYS"):
        cli._stack_options(args, {})
    config = cli._stack_options(args, {"OGLOG_API_KEYS": f"query:{key}"}).config("nats://127.0.0.1:4222")
    assert config.auth_enabled and config.api_keys == (f"query:{key}",)
    insecure = cli._stack_options(args, {"OGLOG_INSECURE": "true", "OGLOG_ALLOWED_HOSTS": "logs.lan"})
    assert insecure.allowed_hosts == ("logs.lan",)
    assert not insecure.config("nats://127.0.0.1:4222").auth_enabled
    loopback = cli.build_parser().parse_args(["stack", "up", *data])
    keys_file = tmp_path / "other-keys.json"
    KeyFile(keys_file).create(parse_scopes("ingest"))
    env = {"OGLOG_REQUIRE_AUTH": "yes", "OGLOG_KEYS_FILE": str(keys_file)}
    assert cli._stack_options(loopback, env).config("nats://127.0.0.1:4222").auth_enabled
    with pytest.raises(cli.ConfigError, match="OGLOG_INSECURE"):
        cli._stack_options(args, {"OGLOG_INSECURE": "maybe"})
